"""Fusion-aware whole-model prediction against the one-factor sum (issue 31): calibrate this device from scratch on
one runtime (kernels, the in-network factor and the unit factors of `measure.fusion`), then predict and measure
whole torchvision models, each predicted both ways from the same calibration.

    python benchmarks/bench_fusion.py                                   # 12 models on eager, a quiet full run
    python benchmarks/bench_fusion.py --runtime onnxruntime             # the same on ONNX Runtime
    DSCALC_MAX_RUN_TIME=0.1 python benchmarks/bench_fusion.py --models resnet18,mobilenet_v3_small   # a quick look

Predictors, on the same measurements:
- fused units: each unit the runtime runs (conv + bn + act, squeeze-excite, channel shuffle, residual add) predicted
  as its running kernels' sum times its pattern's factor (learned from synthetic chains, none of these models)
- kernels' sum: every traced op predicted alone, summed, times the in-network factor (the prediction before)

Each model: its whole forward at 1x3x224x224 (random weights, eval mode), timed by the one protocol on the runtime
asked for (with --repeats N, N whole passes over the models, each model's fastest median kept: a burst of
load from elsewhere hits one pass, not all); predicted from its meta-device trace. Runs in a temporary cache:
the user's calibration is neither read nor replaced.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: torchvision models, none used by the calibration (its chains are synthetic modules)
MODELS = ["resnet18", "resnet34", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "regnet_y_400mf", "regnet_x_400mf", "mnasnet0_5",
          "squeezenet1_1"]


def err(predicted: float | None, measured: float | None) -> float | None:
    return abs(predicted / measured - 1) if predicted and measured else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated torchvision model names")
    ap.add_argument("--runtime", default="eager", choices=("eager", "onnxruntime"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fusion.txt")
    ap.add_argument("--repeats", type=int, default=1,
                    help="time every model this many times, in whole passes, and keep its fastest median")
    ap.add_argument("--note", default="", help="a line on the conditions (e.g. 'taken under load from ...')")
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dscalc-bench-fusion-")

    import torch

    from dscalc.measure import calibrate, fusion
    from dscalc.measure.ceilings import get_ceilings, machine_load
    from dscalc.measure.modules import time_module
    from dscalc.measure.predictor import Predictor
    from dscalc.measure.settings import Settings, configured
    from dscalc.study.model import summed_model, whole_model
    from dscalc.trace.profile import profile_model
    from dscalc.trace.source import ModelSource

    settings = Settings(threads=args.threads, runtime=args.runtime)
    threads = args.threads or torch.get_num_threads()
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads, "
             f"torch {torch.__version__}, Python {platform.python_version()}, runtime {args.runtime}",
             f"load per CPU at start: {machine_load():.2f}"
             + (f"; DSCALC_MAX_RUN_TIME={os.environ['DSCALC_MAX_RUN_TIME']}"
                if os.environ.get("DSCALC_MAX_RUN_TIME") else "")]
    if args.note:
        lines.append(args.note)
    ceilings = get_ceilings("cpu", refresh=True, threads=threads)[0]
    started = time.perf_counter()
    cal = calibrate.calibrate(settings)
    predictor = Predictor(ceilings, settings, {"float32": cal})
    lines.append(f"calibration: {calibrate.probe_count()} measurements, {time.perf_counter() - started:.0f} s")
    lines.append(f"  in-network factor: {cal.in_network:.2f}; unit factors (measured / the running kernels' sum): "
                 + ", ".join(f"{p} {cal.units[p]:.2f}" for p in fusion.LEARNED if p in cal.units))
    fits = ", ".join(f"{k} {100 * m.error:.0f}%" for k, m in sorted(cal.models.items()))
    lines.append(f"  kernel fits' median error: {fits} (grown large, the load moved: no figure below means much)")
    lines += ["", "| model | measured ms | fused units ms | err | kernels' sum ms | err | units |",
              "|---|---:|---:|---:|---:|---:|---|"]
    errs: dict[str, list[float]] = {"fused units": [], "kernels' sum": []}
    ratios: dict[str, list[float]] = {"fused units": [], "kernels' sum": []}  # measured / predicted
    names = [m for m in args.models.split(",") if m]
    measured: dict[str, Any] = {}
    for _ in range(args.repeats):  # whole passes over the models: a burst of load hits one pass, not every one
        for name in names:
            source = ModelSource.of(f"torchvision:{name}")
            with configured(settings):
                t = time_module(source.load("cpu"), [(1, 3, 224, 224)], settings, name, own=True)
            if name not in measured or (t.median and (not measured[name].median or t.median < measured[name].median)):
                measured[name] = t
    for name in names:
        source = ModelSource.of(f"torchvision:{name}")
        result = profile_model(source.load("meta"), [(1, 3, 224, 224)], None, dtype="float32")
        fused, summed = whole_model(result, predictor), summed_model(result, predictor)
        t = measured[name]
        e_fused, e_summed = err(fused, t.median), err(summed, t.median)
        if e_fused is not None and e_summed is not None:
            errs["fused units"].append(e_fused)
            errs["kernels' sum"].append(e_summed)
            assert fused and summed and t.median  # (errors are None otherwise)
            ratios["fused units"].append(t.median / fused)
            ratios["kernels' sum"].append(t.median / summed)
        n = fusion.counts(fusion.units(result.ops, args.runtime))
        shown = " ".join(f"{p}:{n[p]}" for p in fusion.PATTERNS if n[p])
        lines.append(f"| {name} | {1e3 * (t.median or 0):.2f} | {1e3 * (fused or 0):.2f} | "
                     f"{'' if e_fused is None else f'{100 * e_fused:.0f}%'} | {1e3 * (summed or 0):.2f} | "
                     f"{'' if e_summed is None else f'{100 * e_summed:.0f}%'} | {shown} |")
        print(lines[-1], flush=True)
    lines.append("")
    for pname, e in errs.items():
        if e:
            lines.append(f"{pname}: within 15% {sum(x <= 0.15 for x in e)}/{len(e)}, within 25% "
                         f"{sum(x <= 0.25 for x in e)}/{len(e)}, median error {100 * statistics.median(e):.0f}%")
    lines.append("after one common scale per predictor (its median measured/predicted; what is left is the "
                 "structure it misses, whatever the load did to every model alike):")
    for pname, r in ratios.items():
        if r:
            scale = statistics.median(r)
            left = [abs(x / scale - 1) for x in r]
            lines.append(f"  {pname}: scale x{scale:.2f}, within 15% {sum(x <= 0.15 for x in left)}/{len(left)}, "
                         f"median error {100 * statistics.median(left):.0f}%, max/min ratio {max(r) / min(r):.2f}")
    lines.append(f"load per CPU at end: {machine_load():.2f}")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

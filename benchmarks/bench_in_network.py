"""Does the in-network effect grow with the maps? Chains of conv + batch norm + activation (the calibration's
reference chains: at 64²/56², and at 224² input, 112² early maps), each timed whole against
the sum of its kernels predicted alone and against its fused units' prediction (`measure.fusion` factors), from one
eager calibration (issue 31's diagnosis of eager whole models predicted low); then whole torchvision models eager,
traced by torch.jit.trace (the same kernels without Python between them) and predicted.

    python benchmarks/bench_in_network.py --cache DIR   # DIR: an XDG_CACHE_HOME holding an eager calibration
                                                        # (bench_predict.py's /tmp/dscalc-bench-predict-* keeps one)
    python benchmarks/bench_in_network.py               # calibrates first, in a temporary cache (~2 min)

Results: benchmarks/results/in_network.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "in_network.txt")
    ap.add_argument("--models", default="mobilenet_v3_small,shufflenet_v2_x1_0,efficientnet_b0,resnet18")
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = str(args.cache) if args.cache else tempfile.mkdtemp(prefix="dscalc-in-network-")

    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.settings import Settings, configured

    if args.cache:
        entries = json.loads((args.cache / "dscalc" / "calibration.json").read_text())
        cal = calibrate.checked(next(v for v in entries.values()
                                     if isinstance(v, dict) and v.get("runtime") == "eager"))
    else:
        cal = calibrate.calibrate(Settings())

    def fused(probes: list) -> float:
        """Each conv + bn + act triple as a unit, scaled by its pattern's factor (eager runs all three)."""
        total = 0.0
        for i in range(0, len(probes), 3):
            kernels = [p.kernel for p in probes[i:i + 3]]
            pattern = "depthwise" if kernels[0].kind == "depthwise" else "conv"
            total += sum(cal.predict(k).seconds for k in kernels) * cal.units.get(pattern, cal.in_network)
        return total

    dt = "float32"
    # the calibration's reference chains (the 224² two were this benchmark's own before they joined it)
    chains = calibrate.chains(dt)
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; calibration: "
             f"{cal.name}, in-network factor {cal.in_network:.2f}, unit factors "
             + ", ".join(f"{k} {v:.2f}" for k, v in cal.units.items())
             + f"; load per CPU at start {machine_load():.2f}", "",
             "| chain | measured | kernels' sum | measured / sum | fused units | measured / fused |",
             "|---|---|---|---|---|---|"]
    timing = Settings(min_run_time=0.2, max_run_time=1.0)
    with configured(timing):
        for name, probes in chains.items():
            t = calibrate.measure_chain(probes, timing).median or 0.0
            alone = sum(cal.predict(p.kernel).seconds for p in probes)
            lines.append(f"| {name} | {1e3 * t:.2f} ms | {1e3 * alone:.2f} ms | {t / alone:.2f}x | "
                         f"{1e3 * fused(probes):.2f} ms | {t / fused(probes):.2f}x |")
            print(lines[-1], flush=True)
        # whole models: eager, the same traced by torch.jit.trace (the same ATen kernels, no Python between them),
        # and the prediction (each running kernel alone plus the calibration's network terms)
        import torch
        import torchvision

        from dscalc.measure import fusion
        from dscalc.measure.modules import time_module
        from dscalc.trace.profile import profile_model

        lines += ["", f"whole models, 1x3x224x224; predicted: kernels alone + {cal.network_terms()}", "",
                  "| model | eager | torch.jit.trace | eager / traced | predicted | predicted / traced |",
                  "|---|---|---|---|---|---|"]
        for name in args.models.split(","):
            model = getattr(torchvision.models, name)().eval()
            eager = time_module(model, [(1, 3, 224, 224)], timing, name).median or 0.0
            with torch.inference_mode():
                traced_model = torch.jit.trace(model, torch.randn(1, 3, 224, 224))
            traced = time_module(traced_model, [(1, 3, 224, 224)], timing, name, own=True).median or 0.0
            result = profile_model(model.to("meta"), [(1, 3, 224, 224)])
            p = fusion.predict(result.ops, dt, "eager", lambda k: cal.predict(k).seconds, cal.units, cal.in_network,
                               result.copies, cal.network) or 0.0
            lines.append(f"| {name} | {1e3 * eager:.2f} ms | {1e3 * traced:.2f} ms | {eager / traced:.2f}x | "
                         f"{1e3 * p:.2f} ms | {p / traced:.2f}x |")
            print(lines[-1], flush=True)
    lines.append(f"\nload per CPU at the end: {machine_load():.2f}")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

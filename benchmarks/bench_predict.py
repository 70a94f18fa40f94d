"""Keep the latency predictor honest: calibrate this device from scratch, then predict and measure configs it has
never seen, and whole torchvision models, with three predictors side by side (issue 12).

    python benchmarks/bench_predict.py                      # 60 held-out pairs, 10 models, CSV + summary
    python benchmarks/bench_predict.py --pairs 20 --models resnet18,mobilenet_v2   # a quick look

Predictors compared on the same measurements:
- calibrated: `dscalc device --calibrate`'s per-kind model (fixed cost + effective compute and memory rates)
- roofline:   max(FLOPs / matmul peak, bytes / copy bandwidth, launch floor), the device's measured ceilings
- MAC ratio:  separable wins by its MAC ratio (a speedup, not a time: no per-kernel or model figure)

Held-out pairs come from a seeded generator, each a standard k x k conv (k 3/5/7; channels 8..1024; sizes 7..112;
batch 1..32; stride 1/2; capped at 1.5 GMACs so a pair takes seconds, not minutes, on a 2-core CPU) and its
depthwise + pointwise pair, none equal to a calibration kernel. The standard conv and the pair are timed in
interleaved blocks (`measure.modules.time_against`, as `compare --time` does); the depthwise and pointwise kernels
alone by the standard protocol. Models: each whole forward at 1x3x224x224 (random weights, eval mode), predicted
from every op of its meta-device trace.

Winner right counts the pairs whose measured speedup is decided (the interquartile range of its paired ratio lies
on one side of 1); pairs within the noise are counted apart, as `compare` calls them "too close to call".

Runs in a temporary cache: the user's ceilings and calibration are neither read nor replaced.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "shufflenet_v2_x1_0", "squeezenet1_1", "mnasnet1_0", "regnet_y_400mf"]
CHANNELS = [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
SIZES = [7, 10, 14, 20, 28, 40, 56, 80, 112]
BATCHES = [1, 2, 4, 8, 16, 32]
MAC_CAP = 1_500_000_000


def held_out_pairs(n: int, seed: int, design_names: set[tuple]) -> list:
    """n standard convs (and their separable pairs) from a seeded generator, none in the calibration design."""
    from dscalc.cost.kinds import separable_of
    from dscalc.cost.layers import conv

    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < n:
        k = rng.choice((3, 5, 7))
        cin, cout = rng.choice(CHANNELS), rng.choice(CHANNELS)
        size, batch, stride = rng.choice(SIZES), rng.choice(BATCHES), rng.choice((1, 1, 2))
        key = ("standard", cin, cout, k, size, batch, stride)
        if key in seen or key in design_names:
            continue
        layer = conv(cin, cout, k, size, stride=stride, padding="same" if stride == 1 else k // 2, batch=batch,
                     name=f"k{k}/s{stride} {cin}->{cout} {size}² b{batch}")
        if layer.macs > MAC_CAP:
            continue
        seen.add(key)
        comparison = separable_of(layer)
        assert comparison is not None
        pairs.append(comparison)
    return pairs


def design_keys(probes: list) -> set[tuple]:
    """The calibration's standard convs as (kind, cin, cout, k, size, batch, stride), to keep held-out configs
    disjoint from them (the other kinds never equal a held-out standard conv)."""
    import re

    keys = set()
    for p in probes:
        m = re.fullmatch(r"conv k(\d)/s(\d) (\d+)->(\d+) (\d+)² b(\d+)", p.kernel.name)
        if m:
            k, s, cin, cout, size, b = map(int, m.groups())
            keys.add(("standard", cin, cout, k, size, b, s))
    return keys


def err(pred: float | None, meas: float | None) -> float | None:
    return abs(pred / meas - 1) if pred is not None and meas else None


def frac(values: list[float | None], limit: float) -> str:
    vals = [v for v in values if v is not None]
    return f"{sum(v <= limit for v in vals)}/{len(vals)} ({100 * sum(v <= limit for v in vals) / len(vals):.0f}%)" \
        if vals else "-"


def med(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    return f"{100 * statistics.median(vals):.0f}%" if vals else "-"


def noise_floor(args: argparse.Namespace, repeats: int = 5) -> int:
    """How far the same kernel's median moves between separate measurements: the floor under any prediction's
    per-kernel error."""
    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.modules import time_layer
    from dscalc.measure.settings import Settings, configured

    settings = Settings(device=args.device, threads=args.threads)
    spread, deviation = [], []
    with configured(settings):
        for c in held_out_pairs(args.noise, args.seed, design_keys(calibrate.design())):
            for layer in (c.original, c.depthwise, c.pointwise):
                medians = [t.median for t in (time_layer(layer, settings) for _ in range(repeats)) if t.median]
                mid = statistics.median(medians)
                spread.append((max(medians) - min(medians)) / mid)
                deviation += [abs(m / mid - 1) for m in medians]
    lines = [f"noise floor: {len(spread)} held-out kernels (the first {args.noise} pairs, seed {args.seed}), "
             f"{repeats} separate measurements each, load per CPU {machine_load():.2f} at the end",
             f"  median deviation of a measurement from its kernel's median: {med(deviation)}; "
             f"within 25%: {frac(deviation, 0.25)}",
             f"  median spread (max - min) / median per kernel: {med(spread)}"]
    out = args.out.with_name(args.out.stem + "_noise.txt")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict.csv")
    ap.add_argument("--summary", type=Path, default=None, help="also write the summary here (default: beside --out)")
    ap.add_argument("--noise", type=int, default=0, metavar="N",
                    help="only measure the noise floor: the kernels of the first N held-out pairs, 5 times each")
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dscalc-bench-predict-")
    if args.noise:
        return noise_floor(args)

    import torch

    from dscalc.measure import calibrate, roofline
    from dscalc.measure.ceilings import get_ceilings, machine_load
    from dscalc.measure.modules import time_against, time_layer, time_module
    from dscalc.measure.predict import kernel_of
    from dscalc.measure.predictor import Predictor, op_kernel
    from dscalc.measure.settings import Settings, configured
    from dscalc.report.profile import whole_model
    from dscalc.trace.profile import profile_model
    from dscalc.trace.source import ModelSource

    settings = Settings(device=args.device, threads=args.threads)
    threads = args.threads or torch.get_num_threads()
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads, "
             f"torch {torch.__version__}, Python {platform.python_version()}, device {args.device}",
             f"load per CPU at start: {machine_load():.2f}"]
    ceilings = get_ceilings(args.device, refresh=True, threads=threads)[0]
    started = time.perf_counter()
    cal = calibrate.calibrate(settings)
    predictor = Predictor(ceilings, settings, {"float32": cal})
    lines.append(f"calibration: {calibrate.probe_count()} measurements, {time.perf_counter() - started:.0f} s "
                 f"(target <= 120 s); load per CPU after: {machine_load():.2f}")
    lines.append(f"  in-network factor (2 reference chains, measured / the kernels' predicted sum): "
                 f"{cal.in_network:.2f}")
    for kind, m in sorted(cal.models.items()):
        d = m.to_dict()
        lines.append(f"  {kind:<11} fixed {1e6 * m.fixed:8.1f} µs  "
                     f"{(d['flop_per_s'] or 0) / 1e9:8.1f} GFLOP/s  {(d['byte_per_s'] or 0) / 1e9:7.1f} GB/s  "
                     f"fit median error {100 * m.error:.0f}% ({m.samples} kernels)")

    rows: list[dict] = []
    winner = {"calibrated": [], "roofline": [], "MAC ratio": []}
    speed_err: dict[str, list] = {"calibrated": [], "roofline": [], "MAC ratio": []}
    kernel_err: dict[str, list] = {"calibrated": [], "roofline": []}
    too_close = 0
    pairs = held_out_pairs(args.pairs, args.seed, design_keys(calibrate.design()))
    with configured(settings):
        for i, c in enumerate(pairs):
            t_std, t_pair, ratio = time_against(c.original, c.depthwise, c.pointwise, settings)
            t_dw, t_pw = time_layer(c.depthwise, settings), time_layer(c.pointwise, settings)
            measured = {"standard": t_std.median, "depthwise": t_dw.median, "pointwise": t_pw.median}
            cal_p = {n: cal.predict(kernel_of(layer)).seconds for n, layer in
                     (("standard", c.original), ("depthwise", c.depthwise), ("pointwise", c.pointwise))}
            roof_p = {n: roofline.predict(layer, ceilings).seconds for n, layer in
                      (("standard", c.original), ("depthwise", c.depthwise), ("pointwise", c.pointwise))}
            speedup = ratio.median if ratio is not None else None
            decided = ratio is not None and ratio.decided
            too_close += not decided
            preds = {"calibrated": cal_p["standard"] / (cal_p["depthwise"] + cal_p["pointwise"]),
                     "roofline": roof_p["standard"] / (roof_p["depthwise"] + roof_p["pointwise"]),
                     "MAC ratio": c.original.macs / (c.depthwise.macs + c.pointwise.macs)}
            for name, p in preds.items():
                if decided and speedup is not None:
                    winner[name].append((p > 1) == (speedup > 1))
                speed_err[name].append(err(p, speedup))
            for kernel in ("standard", "depthwise", "pointwise"):
                kernel_err["calibrated"].append(err(cal_p[kernel], measured[kernel]))
                kernel_err["roofline"].append(err(roof_p[kernel], measured[kernel]))
                rows.append({"what": "kernel", "name": f"{c.original.name} {kernel}", "kind": kernel,
                             "macs": {"standard": c.original, "depthwise": c.depthwise,
                                      "pointwise": c.pointwise}[kernel].macs,
                             "measured_s": measured[kernel], "calibrated_s": cal_p[kernel],
                             "roofline_s": roof_p[kernel], "mac_ratio": "", "measured_speedup": "",
                             "speedup_q1": "", "speedup_q3": "", "calibrated_speedup": "", "roofline_speedup": ""})
            rows.append({"what": "pair", "name": c.original.name, "kind": "standard/separable",
                         "macs": c.original.macs, "measured_s": t_pair.median, "calibrated_s":
                         cal_p["depthwise"] + cal_p["pointwise"], "roofline_s": roof_p["depthwise"] +
                         roof_p["pointwise"], "mac_ratio": f"{preds['MAC ratio']:.3f}",
                         "measured_speedup": f"{speedup:.3f}" if speedup else "",
                         "speedup_q1": f"{ratio.q1:.3f}" if ratio else "",
                         "speedup_q3": f"{ratio.q3:.3f}" if ratio else "",
                         "calibrated_speedup": f"{preds['calibrated']:.3f}",
                         "roofline_speedup": f"{preds['roofline']:.3f}"})
            print(f"[{i + 1}/{len(pairs)}] {c.original.name}: measured {speedup or 0:.2f}x "
                  f"({'decided' if decided else 'too close'}), calibrated {preds['calibrated']:.2f}x, "
                  f"roofline {preds['roofline']:.2f}x, MACs {preds['MAC ratio']:.1f}x", flush=True)

        model_err: dict[str, list] = {"calibrated": [], "roofline": [], "MAC ratio": []}
        for name in [m for m in args.models.split(",") if m]:
            source = ModelSource.of(f"torchvision:{name}")
            result = profile_model(source.load("meta"), [(1, 3, 224, 224)], None, dtype="float32")
            ks = [op_kernel(op.op, op.kind, op.macs, op.elements,
                            op.reads.bytes("float32") + op.writes.bytes("float32"),
                            op.layer.kind if op.layer is not None else None) for op in result.ops]
            cal_s = whole_model(result, predictor)  # the kernels' sum x the in-network factor, as profile does
            assert cal_s is not None
            roof_s = sum(roofline.predict_work(k.flops, k.bytes, "float32", ceilings).seconds for k in ks)
            peak = ceilings.peak_flops.get("float32") or max(ceilings.peak_flops.values())
            mac_s = 2 * result.totals["macs"] / peak
            t = time_module(source.load("cpu"), [(1, 3, 224, 224)], settings, name, own=True)
            for pname, p in (("calibrated", cal_s), ("roofline", roof_s), ("MAC ratio", mac_s)):
                model_err[pname].append(err(p, t.median))
            rows.append({"what": "model", "name": name, "kind": "torchvision", "macs": result.totals["macs"],
                         "measured_s": t.median, "calibrated_s": cal_s, "roofline_s": roof_s,
                         "mac_ratio": "", "measured_speedup": "", "speedup_q1": "", "speedup_q3": "",
                         "calibrated_speedup": "", "roofline_speedup": ""})
            print(f"model {name}: measured {1e3 * (t.median or 0):.1f} ms, calibrated {1e3 * cal_s:.1f} ms, "
                  f"roofline {1e3 * roof_s:.1f} ms, MACs at peak {1e3 * mac_s:.1f} ms", flush=True)

    decided_n = len(winner["calibrated"])
    lines += ["", f"held-out pairs: {len(pairs)} (seed {args.seed}); decided by the paired measurement: {decided_n}, "
              f"too close to call: {too_close}", "",
              "| figure | target | calibrated | roofline | MAC ratio |", "|---|---|---|---|---|"]

    def right(name: str) -> str:
        w = winner[name]
        return f"{sum(w)}/{len(w)} ({100 * sum(w) / len(w):.0f}%)" if w else "-"

    lines.append(f"| winner right (decided pairs) | >= 95% | {right('calibrated')} | {right('roofline')} | "
                 f"{right('MAC ratio')} |")
    lines.append(f"| speedup within 25% of measured | - | {frac(speed_err['calibrated'], 0.25)} | "
                 f"{frac(speed_err['roofline'], 0.25)} | {frac(speed_err['MAC ratio'], 0.25)} |")
    lines.append(f"| median speedup error | - | {med(speed_err['calibrated'])} | {med(speed_err['roofline'])} | "
                 f"{med(speed_err['MAC ratio'])} |")
    lines.append(f"| kernels within 25% | >= 80% | {frac(kernel_err['calibrated'], 0.25)} | "
                 f"{frac(kernel_err['roofline'], 0.25)} | - |")
    lines.append(f"| median kernel error | - | {med(kernel_err['calibrated'])} | {med(kernel_err['roofline'])} | - |")
    lines.append(f"| models within 15% | >= 8/10 | {frac(model_err['calibrated'], 0.15)} | "
                 f"{frac(model_err['roofline'], 0.15)} | {frac(model_err['MAC ratio'], 0.15)} |")
    lines.append(f"| median model error | - | {med(model_err['calibrated'])} | {med(model_err['roofline'])} | "
                 f"{med(model_err['MAC ratio'])} |")
    by_kind: dict[str, list] = {}
    for r in rows:
        if r["what"] == "kernel" and r["measured_s"]:
            by_kind.setdefault(r["kind"], []).append(err(r["calibrated_s"], r["measured_s"]))
    lines += ["", "calibrated kernel error by kind: " + ", ".join(
        f"{kind} median {med(v)}, within 25% {frac(v, 0.25)}" for kind, v in sorted(by_kind.items()))]
    lines.append(f"load per CPU at the end: {machine_load():.2f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = args.summary or args.out.with_suffix(".txt")
    summary.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

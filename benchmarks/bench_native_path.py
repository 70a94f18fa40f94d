"""Can a calibration learn torch's native convolution kernel? Batch-1 convs of late maps (bench_predict's
`held_out_batch1`: 3x3 and 1x1 on 7²-28², alternately at most and more than 20,480 input elements, so half run on
torch's native im2col kernel and half on oneDNN's - `measure.learned.torch_native_conv`), none of them measured
by the calibration, each timed twice as a calibration probe (a minute apart). Then the forests are refitted on the
calibration's samples plus the first k of these convs, with and without the `torch_native_conv` feature, and scored
on the last ones - against the first measurement, beside how far the second one agrees with it.

    python benchmarks/bench_native_path.py [--convs 200] [--budget 120] [--output benchmarks/results/native_path.txt]

Runs in a temporary cache: the user's ceilings and calibration are neither read nor replaced. Eager, CPU, float32.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_predict import emit, err, frac, held_out_batch1, med, seen_keys  # noqa: E402  (dscalc from this checkout)

#: how many of the recorded convs are added to the calibration's samples before refitting
ADDED = (0, 20, 50, 100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convs", type=int, default=200, help="batch-1 convs recorded (half on each kernel)")
    ap.add_argument("--budget", type=float, default=120.0, help="the calibration's time budget (seconds)")
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dscalc-bench-native-")

    import torch

    from dscalc.measure import calibrate, learned
    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.predict import Sample, fit_all, kernel_of
    from dscalc.measure.settings import Settings, configured, cpu_model

    settings = Settings(device="cpu")
    threads = torch.get_num_threads()
    load = machine_load()
    started = time.perf_counter()
    cal = calibrate.calibrate(settings, budget=args.budget)
    took = time.perf_counter() - started
    native = cal.native_threads
    layers = held_out_batch1(args.convs, args.seed, seen_keys(cal))
    quick = replace(settings, min_run_time=calibrate.MIN_RUN, max_run_time=calibrate.MAX_RUN)
    passes: list[list[float | None]] = []
    with configured(quick):
        for _ in range(2):
            passes.append([calibrate.measure_probe(calibrate._layer_probe(layer), quick).median for layer in layers])
    kernels = [kernel_of(layer) for layer in layers]
    on = [learned.torch_native_conv(k, native) for k in kernels]
    recorded = [Sample(k, t) for k, t in zip(kernels, passes[0]) if t]
    half = len(layers) // 2
    test = [(k, t, flag) for k, t, flag in zip(kernels[half:], passes[0][half:], on[half:]) if t]

    def score(predict) -> str:
        cells = []
        for label, flag in (("native", True), ("oneDNN", False)):
            e = [err(predict(k), t) for k, t, f in test if f == flag]
            cells.append(f"{label} {frac(e, 0.25)} (median {med(e)})")
        return ", ".join(cells)

    again = [err(b, a) for a, b in zip(passes[0], passes[1])]
    lines = [f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {threads} threads, torch {torch.__version__}; load per "
             f"CPU {load:.2f} at the start",
             f"calibration: {len(cal.samples)} kernels in {took:.0f} s (budget {args.budget:.0f} s), of them on "
             f"torch's native kernel: {sum(learned.torch_native_conv(s.kernel, native) for s in cal.samples)}",
             f"recorded: {len(layers)} batch-1 convs of late maps ({sum(on)} on torch's native kernel), twice; the "
             f"second pass within 25% of the first: native {frac([e for e, f in zip(again, on) if f], 0.25)}, "
             f"oneDNN {frac([e for e, f in zip(again, on) if not f], 0.25)}",
             f"scored on the last {len(test)} against their first pass, within 25%:",
             f"  linear as calibrated: {score(lambda k: cal.predict(k, linear=True).seconds)}",
             f"  learned as calibrated: {score(lambda k: cal.predict(k).seconds)}"]
    for added in ADDED:
        extra = [s for s in recorded if s.kernel in kernels[:half]][:added]
        samples = list(cal.samples) + extra
        models = fit_all(samples)
        for label, n in (("with", native), ("without", 0)):
            refitted = replace(cal, models=models,
                               learned=learned.fit_learned(samples, models, native_threads=n))
            lines.append(f"  +{added} recorded convs, forests {label} the feature: "
                         f"{score(lambda k, c=refitted: c.predict(k).seconds)}")
    lines.append(f"load per CPU at the end: {machine_load():.2f}")
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

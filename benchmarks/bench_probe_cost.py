"""What one calibration probe costs to time: the timer's own ~10 ms blocks (`measure.timer.measure`) against the
protocol it replaced (torch.utils.benchmark's adaptive_autorange with the same threshold and run times, topped up
to MIN_RUNS blocks), paired per probe in alternating order, on the first N kernels of the calibration's candidate
pool, each with calibrate's quick run times (MIN_RUN 0.05 s, MAX_RUN 0.4 s).

    python benchmarks/bench_probe_cost.py [--probes 40] [--output benchmarks/results/probe_cost.txt]

Prints each protocol's wall time per probe (median, sum), the paired ratio, and how far the two medians agree (the
same kernel timed twice: on a noisy machine that is the noise, not a bias of either protocol).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_predict import emit  # noqa: E402  (after the path: dscalc from this checkout)
from predict_repeat import within  # noqa: E402


def autorange(fn, settings) -> float:
    """The replaced protocol: three warm-up calls, adaptive_autorange (its own block sizing), topped up to
    MIN_RUNS blocks; the median per call."""
    import torch
    from torch.utils import benchmark

    from dscalc.measure.timer import MIN_RUNS

    for _ in range(3):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.adaptive_autorange(threshold=0.05, min_run_time=settings.min_run_time,
                                 max_run_time=settings.max_run_time)
    raw = list(m.raw_times)
    while len(raw) < MIN_RUNS and sum(raw) < 3 * settings.max_run_time:
        raw += timer.timeit(m.number_per_run).raw_times
    return statistics.median(t / m.number_per_run for t in raw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=40)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

    from torch import nn

    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.modules import prepare
    from dscalc.measure.settings import Settings, configured, cpu_model
    from dscalc.measure.timer import measure, steady_allocator

    quick = replace(Settings(), min_run_time=calibrate.MIN_RUN, max_run_time=calibrate.MAX_RUN)
    steady_allocator()
    costs: dict[str, list[float]] = {"blocks of ~10 ms": [], "adaptive_autorange": []}
    medians: dict[str, list[float]] = {name: [] for name in costs}
    load = machine_load()
    with configured(quick):
        for i, probe in enumerate(calibrate.candidates()[:args.probes]):
            built = prepare(probe.build(nn), probe.input_shapes, quick)
            order = list(costs) if i % 2 == 0 else list(costs)[::-1]
            for name in order:
                start = time.perf_counter()
                med = measure(built.call, quick).median if name == "blocks of ~10 ms" else autorange(built.call, quick)
                costs[name].append(time.perf_counter() - start)
                medians[name].append(med or float("nan"))
    new, old = costs["blocks of ~10 ms"], costs["adaptive_autorange"]
    agree = [a / b for a, b in zip(medians["blocks of ~10 ms"], medians["adaptive_autorange"])]
    lines = [f"machine: {cpu_model()}, {os.cpu_count()} CPUs; load per CPU {load:.2f} at the start, "
             f"{machine_load():.2f} at the end; {len(new)} probes of calibrate.candidates(), run times 0.05-0.4 s"]
    for name, c in costs.items():
        lines.append(f"  {name:<20} wall per probe: median {statistics.median(c):.3f} s, sum {sum(c):.1f} s")
    ratio = statistics.median(n / o for n, o in zip(new, old))
    lines.append(f"  paired per probe, blocks / adaptive_autorange: median {ratio:.2f}x")
    lines.append(f"  medians of the two, blocks / adaptive_autorange: median {statistics.median(agree):.2f}, "
                 f"within 10%: {within(agree, 0.10)}, within 25%: {within(agree, 0.25)}")
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

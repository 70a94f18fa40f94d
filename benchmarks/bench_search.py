"""`dscalc search` on this CPU (issue 28): how long costing and predicting every candidate takes, and whether the
predicted Pareto front (latency, params) is the measured one.

    python benchmarks/bench_search.py                          # cifar_modules (27) + 40 of mobilenet_v2_blocks
    python benchmarks/bench_search.py --v2-budget 20 --repeats 2 --roofline     # a quick look

For each space:
1. cost + predict: `run_search(..., predict=True)` timed end to end (every candidate of cifar_modules; a seeded
   Optuna sample of mobilenet_v2_blocks, whose 139,968 candidates would take hours to enumerate), with the number
   of block predictions its per-signature cache made;
2. measured: every searched candidate timed whole (`measure.search.network_module`, torch eager, the protocol of
   `measure.timer`), `--repeats` times; the measured front over (median latency, params) against the predicted one:
   how often they are equal, their Jaccard overlap, and the median |predicted / measured - 1| on the front.

Runs in a temporary cache (the user's ceilings and calibration are neither read nor replaced): the device is
calibrated first (about two minutes, bounded by DSCALC_MAX_RUN_TIME) unless --roofline. The machine's load is
recorded: on a shared machine timings are noisy, and the figures say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def front_of(points: dict[str, tuple[float, float]]) -> set[str]:
    from dscalc.measure.search import pareto

    ids = list(points)
    return {i for i, m in zip(ids, pareto([points[i] for i in ids])) if m}


def bench_space(name: str, budget: int | None, repeats: int, settings, out: list[str]) -> dict:
    from dscalc.measure.modules import time_module
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.search import network_module, run_search
    from dscalc.measure.settings import configured

    predictor = predictor_for(None, "cpu")  # the ceilings and calibration loaded (or measured) first, not timed
    predictor.calibration("float32")
    start = time.perf_counter()
    result = run_search(name, predict=True, budget=budget, seed=0, axes=("latency", "params"), predictor=predictor)
    elapsed = time.perf_counter() - start
    n = len(result.results)
    kernels = sum(len(r.candidate.rows) for r in result.results)
    predicted_front = {r.candidate.id for r in result.front}
    out.append(f"## {name}: {n} of {result.space.size:,} candidates ({result.method})")
    out.append(f"cost + predict: {elapsed:.2f} s in all, {1000 * elapsed / n:.1f} ms per candidate; "
               f"{result.predictions} block predictions for {kernels:,} rows ({result.prediction})")
    by_id = {r.candidate.id: r for r in result.results}
    runs: list[dict[str, float]] = []
    for rep in range(repeats):
        medians: dict[str, float] = {}
        with configured(settings):
            for r in result.results:
                c = r.candidate
                t = time_module(network_module(c.rows, c.sources), [c.rows[0].input_shape], settings, c.id, own=True)
                if t.median:
                    medians[c.id] = t.median
        runs.append(medians)
        out.append(f"  repeat {rep + 1}: measured {len(medians)} candidates ({load()})")
    equal, jaccards, errors = 0, [], []
    fronts = []
    for medians in runs:
        measured_front = front_of({i: (m, by_id[i].candidate.params) for i, m in medians.items()})
        fronts.append(sorted(measured_front))
        equal += measured_front == predicted_front
        jaccards.append(len(measured_front & predicted_front) / len(measured_front | predicted_front))
        errors += [abs(by_id[i].latency_s / medians[i] - 1) for i in predicted_front if i in medians]
    all_errors = [abs(r.latency_s / runs[0][r.candidate.id] - 1) for r in result.results
                  if r.candidate.id in runs[0] and r.latency_s]
    pairs = [(a, b) for a in runs[0] for b in runs[0] if a < b]
    agree = sum((by_id[a].latency_s - by_id[b].latency_s) * (runs[0][a] - runs[0][b]) > 0 for a, b in pairs)
    tau = (2 * agree - len(pairs)) / len(pairs) if pairs else None  # ties in the prediction count as disagreement
    fastest = min(runs[0], key=lambda i: runs[0][i]) if runs[0] else None
    predicted_fastest = min(by_id, key=lambda i: by_id[i].latency_s or 0.0)
    out.append(f"predicted vs measured order (repeat 1): {agree} of {len(pairs)} pairs agree (Kendall tau "
               f"{tau:.2f}); fastest predicted {predicted_fastest}, measured {fastest}" if tau is not None else "")
    out.append(f"predicted front ({len(predicted_front)}): {', '.join(sorted(predicted_front))}")
    for k, f in enumerate(fronts):
        out.append(f"measured front, repeat {k + 1} ({len(f)}): {', '.join(f)}")
    out.append(f"predicted front == measured front: {equal} of {repeats} repeats; Jaccard overlap median "
               f"{statistics.median(jaccards):.2f}")
    if errors:
        out.append(f"|predicted / measured - 1| on the predicted front: median {statistics.median(errors):.2f}; "
                   f"over every candidate (repeat 1): median {statistics.median(all_errors):.2f}")
    out.append("")
    return {"space": name, "candidates": n, "space_size": result.space.size, "method": result.method,
            "cost_predict_s": elapsed, "block_predictions": result.predictions, "rows": kernels,
            "prediction": result.prediction, "predicted_front": sorted(predicted_front), "measured_fronts": fronts,
            "fronts_equal": equal, "kendall_tau": tau, "pairs_agree": agree, "pairs": len(pairs),
            "repeats": repeats, "jaccard": jaccards,
            "front_error_median": statistics.median(errors) if errors else None,
            "predicted_s": {r.candidate.id: r.latency_s for r in result.results},
            "measured_s": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v2-budget", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--roofline", action="store_true", help="predict from the roofline (skip calibrating)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search"))
    args = ap.parse_args()
    os.environ.setdefault("DSCALC_MAX_RUN_TIME", "0.2")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        import torch

        from dscalc.measure.calibrate import calibrate
        from dscalc.measure.settings import Settings, device_name
        from dscalc.measure.timer import budgeted

        settings = budgeted(Settings(device="cpu"))
        out = [f"# bench_search on {device_name('cpu')}, torch {torch.__version__}, python {platform.python_version()}",
               f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; DSCALC_MAX_RUN_TIME="
               f"{os.environ['DSCALC_MAX_RUN_TIME']} s; {torch.get_num_threads()} torch threads; {load()} at start",
               "# the machine is shared (2 cores, several other jobs): timings are noisy, see the load per repeat", ""]
        if not args.roofline:
            start = time.perf_counter()
            cal = calibrate(Settings(device="cpu"))
            out.append(f"calibrated in {time.perf_counter() - start:.0f} s ({load()}); in-network factor "
                       f"{cal.in_network:.2f}")
            out.append("")
        results = []
        for name, budget in (("cifar_modules", None), ("mobilenet_v2_blocks", args.v2_budget)):
            results.append(bench_space(name, budget, args.repeats, settings, out))
            # written after each space, so a run cut short keeps what it measured
            Path(args.out + ".txt").write_text("\n".join(out) + "\n")
            Path(args.out + ".json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()

"""Standard vs depthwise-separable on every runtime that installs here, repeated: how far one runtime's repeated
medians spread, and how often the runtimes disagree on the winner (issue 18).

    python benchmarks/bench_runtimes.py                 # 14 pairs x every installed runtime x 3 repeats
    python benchmarks/bench_runtimes.py --quick         # 3 small pairs x 2 repeats, printed only
    python benchmarks/bench_runtimes.py --runtimes eager,onnxruntime --threads 1 --repeats 3

Each repeat times every pair on every runtime in turn (the runtimes interleaved, so a busy spell of a shared
machine falls on all of them), each standard conv and each depthwise + pointwise pair with dscalc's one timing
protocol (`measure.timer.measure`) on a freshly built call (torch.compile recompiles, ONNX Runtime re-exports,
LiteRT re-converts: a repeat is a new measurement, not a re-read). The verdict is dscalc's own
(`PairLatency.verdict`: 'too close to call' when the IQRs overlap). The full run writes
benchmarks/results/bench_runtimes.{json,md} with the machine: CPU, threads, the 1-minute load average before and
after each repeat, and the versions of everything timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv
from dscalc.errors import DscalcError
from dscalc.measure import modules, runtimes
from dscalc.measure.latency import Latency, PairLatency
from dscalc.measure.settings import Settings, configured, device_name

#: (k, cin, cout, size, batch): k 3/5, channels 16..512, sizes 7..112, batch 1 and 8; the first four are the
#: pairs of issue 18's table
PAIRS = [
    (3, 32, 64, 112, 1), (3, 64, 128, 56, 1), (3, 256, 256, 14, 1), (3, 64, 64, 56, 8),
    (3, 16, 32, 112, 1), (5, 16, 16, 112, 8), (5, 64, 64, 28, 1), (5, 128, 128, 28, 8),
    (3, 128, 256, 28, 8), (3, 512, 512, 7, 1), (5, 512, 512, 7, 8), (3, 512, 512, 14, 8),
    (5, 256, 256, 14, 1), (3, 32, 32, 56, 8),
]
QUICK = [(3, 16, 32, 28, 1), (5, 32, 32, 14, 8), (3, 64, 64, 7, 1)]
ISSUE_PAIRS = 4
RESULTS = Path(__file__).parent / "results"


def label(pair: tuple[int, int, int, int, int]) -> str:
    k, cin, cout, size, batch = pair
    return f"{k}x{k} {cin}->{cout} @{size}, batch {batch}"


def load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The runtimes that install here, and why each other one does not."""
    ok, missing = [], {}
    for n in names:
        try:
            runtimes.require(n)
            ok.append(n)
        except DscalcError as e:
            missing[n] = str(e)
    return ok, missing


def measure_pair(pair: tuple[int, int, int, int, int], settings: Settings) -> dict[str, Any]:
    k, cin, cout, size, batch = pair
    layer = conv(cin, cout, k, size, batch=batch, padding="same")
    comparison = separable_of(layer)
    assert comparison is not None
    with configured(settings):
        std = modules.time_layer(layer, settings)
        sep = modules.time_pair(comparison.depthwise, comparison.pointwise, settings)
    p = PairLatency(Latency("standard", layer.macs, layer.bytes, None, std),
                    Latency("depthwise", comparison.depthwise.macs, comparison.depthwise.bytes, None, None),
                    Latency("pointwise", comparison.pointwise.macs, comparison.pointwise.bytes, None, None),
                    Latency("dw then pw", comparison.macs, comparison.bytes, None, sep))
    return {"standard": std.to_dict(), "separable": sep.to_dict(), "mac_speedup": p.mac_speedup,
            "measured_speedup": p.measured_speedup, "verdict": p.verdict}


def spread(values: list[float]) -> float | None:
    """(max - min) / median of repeated medians."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else None


def summarise(results: list[dict[str, Any]], names: list[str], pairs: list[Any]) -> dict[str, Any]:
    by: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["pair"], r["runtime"]), []).append(r)
    per_runtime = {}
    for n in names:
        spreads, setups, flips, noisy, failed = [], [], 0, 0, 0
        for i in range(len(pairs)):
            runs = by.get((i, n), [])
            for kernel in ("standard", "separable"):
                medians = [r[kernel]["median_s"] for r in runs if r[kernel].get("median_s")]
                s = spread(medians)
                if s is not None:
                    spreads.append(s)
                setups += [r[kernel]["setup_s"] for r in runs if r[kernel].get("setup_s") is not None]
                noisy += sum(1 for r in runs if r[kernel].get("median_s") and not r[kernel]["reliable"])
                failed += sum(1 for r in runs if "error" in r[kernel])
            flips += len({r["verdict"] for r in runs if r["verdict"]}) > 1
        per_runtime[n] = {"median_spread": statistics.median(spreads) if spreads else None,
                          "max_spread": max(spreads) if spreads else None, "kernels": len(spreads),
                          "verdict_changes_between_repeats": flips,
                          "median_setup_s": statistics.median(setups) if setups else None,
                          "noisy_timings": noisy, "failed_timings": failed}
    repeats = sorted({r["repeat"] for r in results})
    disagree_runs = disagree_majority = compared = 0
    for i in range(len(pairs)):
        for rep in repeats:
            verdicts = {r["verdict"] for r in results if r["pair"] == i and r["repeat"] == rep and r["verdict"]}
            compared += 1
            disagree_runs += len(verdicts) > 1
        majority = set()
        for n in names:
            vs = [r["verdict"] for r in by.get((i, n), []) if r["verdict"]]
            if vs:
                majority.add(max(set(vs), key=vs.count))
        disagree_majority += len(majority) > 1
    return {"per_runtime": per_runtime, "disagree_per_repeat": disagree_runs, "pair_repeats": compared,
            "disagree_majority": disagree_majority, "pairs": len(pairs)}


def markdown(data: dict[str, Any]) -> str:
    names, pairs, results, summary = data["runtimes"], data["pairs"], data["results"], data["summary"]
    m = data["machine"]
    lines = ["# bench_runtimes: standard vs depthwise-separable per runtime", "",
             f"Machine: {m['cpu']} ({m['cpus']} CPUs), {m['threads']} thread(s); Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
             f"1-minute load average before/after each repeat: {m['load']}; command: `{m['command']}`; "
             f"{m['started']}, {m['minutes']:.0f} minutes.", ""]
    if data["not_installed"]:
        lines += ["Not measured (not installed here): "
                  + "; ".join(f"{k}: {v}" for k, v in data["not_installed"].items()), ""]
    lines += ["speedup = standard median / separable-pair median (> 1: separable is faster); each cell: the range "
              "over the repeats, then the verdict of each repeat (s = separable wins, t = standard wins, "
              "c = too close to call: the IQRs overlap).", "",
              "| layer pair | MAC ratio | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    short = {"separable wins": "s", "standard wins": "t", "too close to call": "c", None: "-"}
    for i, pair in enumerate(pairs):
        cells = []
        for n in names:
            runs = [r for r in results if r["pair"] == i and r["runtime"] == n]
            gains = [r["measured_speedup"] for r in runs if r["measured_speedup"]]
            shown = "-" if not gains else f"{min(gains):.2f}x" if len(gains) == 1 or max(gains) - min(gains) < 0.005 \
                else f"{min(gains):.2f}–{max(gains):.2f}x"
            cells.append(f"{shown} {''.join(short.get(r['verdict'], '?') for r in runs)}")
        mac = next(r["mac_speedup"] for r in results if r["pair"] == i)
        mark = " (issue 18)" if i < ISSUE_PAIRS and pairs == [list(p) for p in PAIRS] else ""
        lines.append(f"| {label(tuple(pair))}{mark} | {mac:.2f}x | " + " | ".join(cells) + " |")
    lines += ["", "| runtime | median spread of repeated medians | largest spread | verdict changed between repeats "
              "| median setup | noisy timings | failed |", "|---|---:|---:|---:|---:|---:|---:|"]
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    for n in names:
        s = summary["per_runtime"][n]
        setup = "-" if s["median_setup_s"] is None else f"{s['median_setup_s']:.2f} s"
        lines.append(f"| {n} | {pct(s['median_spread'])} | {pct(s['max_spread'])} | "
                     f"{s['verdict_changes_between_repeats']} of {len(pairs)} pairs | {setup} | {s['noisy_timings']} | "
                     f"{s['failed_timings']} |")
    lines += ["", f"The runtimes disagree on the verdict in {summary['disagree_per_repeat']} of "
              f"{summary['pair_repeats']} (pair, repeat) measurements, and by their majority verdict in "
              f"{summary['disagree_majority']} of {summary['pairs']} pairs.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 small pairs, 2 repeats, short timings; print only")
    parser.add_argument("--runtimes", default=",".join(runtimes.RUNTIMES))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="results file stem (default: benchmarks/results/"
                        "bench_runtimes for the full run, none for --quick)")
    args = parser.parse_args()
    pairs = QUICK if args.quick else PAIRS
    repeats = args.repeats or (2 if args.quick else 3)
    names, missing = available(runtimes.parse(args.runtimes))
    base = Settings(threads=args.threads, **({"min_run_time": 0.05, "max_run_time": 0.5} if args.quick else {}))
    runs = runtimes.check(names, base)
    started, t0 = time.strftime("%Y-%m-%d %H:%M %Z"), time.time()
    loads: list[list[float | None]] = []
    results = []
    for rep in range(repeats):
        before = load()
        for i, pair in enumerate(pairs):
            for s in runs:
                r = measure_pair(pair, s)
                results.append({"repeat": rep, "pair": i, "runtime": s.runtime, **r})
                gain = r["measured_speedup"]
                print(f"repeat {rep + 1}/{repeats}  {label(pair):<28} {s.runtime:<12} "
                      f"{'-' if gain is None else f'{gain:.2f}x':>7}  {r['verdict'] or r['standard'].get('error')}",
                      file=sys.stderr, flush=True)
        loads.append([before, load()])
    import torch

    versions = {"dscalc": _version("dscalc"), "torch": torch.__version__}
    versions.update({n: runtimes.version(n) for n in names if n not in ("eager", "compile")})
    if "litert" in names:
        versions["litert-torch"] = runtimes.dist_version("litert-torch")
    with configured(base):
        cpu = device_name("cpu", args.threads).rsplit(" (", 1)[0]
    data = {"machine": {"cpu": cpu, "cpus": os.cpu_count(), "threads": args.threads,
                        "python": platform.python_version(), "versions": versions, "load": loads, "started": started,
                        "minutes": (time.time() - t0) / 60, "command": " ".join(["python", *sys.argv])},
            "runtimes": names, "not_installed": missing, "pairs": [list(p) for p in pairs], "results": results}
    data["summary"] = summarise(results, names, pairs)
    text = markdown(data)
    print(text)
    out = args.out if args.out is not None else (None if args.quick else RESULTS / "bench_runtimes")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
        out.with_suffix(".md").write_text(text)
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}", file=sys.stderr)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()

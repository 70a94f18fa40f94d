"""How often the standard-vs-separable verdict flips between repeated runs of the same layer, for one or more
dscalc executables (A/B: the same configs, runs interleaved, in one session).

    python benchmarks/bench_verdicts.py --dscalc NEW=.venv/bin/dscalc --dscalc OLD=/path/to/old/dscalc [--runs 5]

Each run is `dscalc compare LAYER --time -f json`. A config *flips* when its runs contain both a "separable
wins" and a "standard wins" verdict. Versions without a verdict in their JSON (before 'too close to call'
existed) get one from the measured speedup (> 1: separable wins). Results go to benchmarks/results/verdicts.txt.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import time
from pathlib import Path

# layers near the standard/separable break-even on a CPU, where noise decides the verdict
CONFIGS = [
    ("3x3 32->32 @14 b1", ["--k", "3", "--cin", "32", "--cout", "32", "--size", "14"]),
    ("3x3 16->16 @28 b1", ["--k", "3", "--cin", "16", "--cout", "16", "--size", "28"]),
    ("3x3 32->64 @112 b1", ["--k", "3", "--cin", "32", "--cout", "64", "--size", "112"]),
    ("3x3 64->64 @56 b8", ["--k", "3", "--cin", "64", "--cout", "64", "--size", "56", "--batch", "8"]),
    ("3x3 64->64 @7 b1", ["--k", "3", "--cin", "64", "--cout", "64", "--size", "7"]),
    ("5x5 16->32 @28 b1", ["--k", "5", "--cin", "16", "--cout", "32", "--size", "28"]),
]


def verdict(data: dict) -> str:
    timing = data["timing"]
    if "verdict" in timing:
        return {"separable wins": "separable", "too close to call": "too close"}.get(timing["verdict"], "standard")
    gain = timing["speedup"]["measured"]
    return "separable" if gain and gain > 1 else "standard"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dscalc", action="append", required=True, help="NAME=path of a dscalc executable")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "verdicts.txt"))
    parser.add_argument("--cache", default="/tmp/dscalc-bench-verdicts", help="a cache directory per executable")
    args = parser.parse_args()
    tools = dict(item.split("=", 1) for item in args.dscalc)
    results: dict[str, dict[str, list[tuple[str, float]]]] = {t: collections.defaultdict(list) for t in tools}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    for run in range(args.runs):
        for label, layer in CONFIGS:
            for name, exe in tools.items():  # interleaved: A and B see the same machine
                env = {**os.environ, "XDG_CACHE_HOME": str(Path(args.cache) / name)}  # each its own ceilings
                r = subprocess.run([exe, "compare", *layer, "--time", "-f", "json"], capture_output=True, text=True,
                                   timeout=600, env=env)
                if r.returncode:
                    results[name][label].append(("error", 0.0))
                    continue
                data = json.loads(r.stdout)
                results[name][label].append((verdict(data), data["timing"]["speedup"]["measured"] or 0.0))
        print(f"run {run + 1}/{args.runs} done", flush=True)
    lines = [f"verdict flips over {args.runs} repeated runs per config; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs, 1-min load {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
             f"{time.perf_counter() - start:.0f} s", ""]
    for name in tools:
        flips = close = 0
        lines.append(f"{name} ({tools[name]})")
        for label, _ in CONFIGS:
            runs = results[name][label]
            kinds = collections.Counter(v for v, _ in runs)
            flipped = kinds["separable"] > 0 and kinds["standard"] > 0
            flips += flipped
            close += kinds["too close"]
            speedups = ", ".join(f"{s:.2f}x" for _, s in runs)
            lines.append(f"  {label:<20} {dict(kinds)}  speedups {speedups}" + ("  FLIPS" if flipped else ""))
        lines.append(f"  configs whose verdict flips: {flips} of {len(CONFIGS)}; 'too close to call' verdicts: "
                     f"{close} of {len(CONFIGS) * args.runs}")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

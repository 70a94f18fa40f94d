"""Cold start of `dscalc layer` as a whole process, against a one-layer fvcore script, in the same run.

    python benchmarks/bench_layer_startup.py [--runs 15] [--against /path/to/old/.venv/bin/python]

Prints the median wall time of each command over --runs runs (after one warm-up run each, so the
OS file cache is warm for both) and the ratio. Target (issue #2): dscalc <= 0.25 s and >= 8x faster.

The children run without PYTHONDONTWRITEBYTECODE, as after a normal `pip install`: the warm-up run writes
dscalc's bytecode, as pip does for the dependencies. (With it set, every start recompiles dscalc's own
modules from source, about 20 ms more.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

FVCORE_ONE_LAYER = """
import torch
from fvcore.nn import FlopCountAnalysis
conv = torch.nn.Conv2d(64, 128, 3, padding=1, bias=False)
a = FlopCountAnalysis(conv, torch.zeros(1, 64, 56, 56))
a.unsupported_ops_warnings(False)
print(a.total())
"""

COMMANDS = {
    "python (empty)": [sys.executable, "-c", "pass"],
    "python -c 'import typer' (floor)": [sys.executable, "-c", "import typer"],
    "dscalc layer": [sys.executable, "-m", "dscalc", "layer", "--k", "3", "--cin", "64", "--cout", "128"],
    "fvcore one-layer script": [sys.executable, "-c", FVCORE_ONE_LAYER],
}


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--against", metavar="PYTHON", help="also time `dscalc layer` under another interpreter "
                        "(an earlier checkout's venv): the commands run in interleaved rounds, a paired A/B")
    args = parser.parse_args()
    commands = dict(COMMANDS)
    if args.against:
        commands["dscalc layer (--against)"] = [args.against, *COMMANDS["dscalc layer"][1:]]
    for cmd in commands.values():
        wall(cmd)  # warm-up: page cache, .pyc files
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # rounds: every command once per round, so drift hits them all alike
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    medians = {}
    for name, ts in times.items():
        medians[name] = statistics.median(ts)
        q = statistics.quantiles(ts, n=4)
        print(f"{name:<36} median {medians[name]:.3f} s   IQR {q[2] - q[0]:.3f} s   ({args.runs} runs)")
    if args.against:
        pairs = sorted(a / b for a, b in zip(times["dscalc layer (--against)"], times["dscalc layer"]))
        print(f"--against / this dscalc layer, paired per round: median {statistics.median(pairs):.2f}x")
    ratio = medians["fvcore one-layer script"] / medians["dscalc layer"]
    print(f"\nfvcore / dscalc layer: {ratio:.1f}x   (target >= 8x; dscalc target <= 0.25 s)")


if __name__ == "__main__":
    main()

"""Cold start of `dscalc profile` on a two-conv model, as a whole process, against a script that counts the same
model with torch's FlopCounterMode - the floor for anything that imports torch and runs a forward.

    python benchmarks/bench_profile_startup.py [--runs 11]

Each round runs both once (interleaved, so load and drift hit them alike); each is measured by its CPU time (user
+ system of the child, steadier than wall time on a shared machine) and its wall time. Prints medians and the
paired per-round ratio dscalc / FlopCounterMode (issue 25: aim at 1.0x). The model file is written to a temporary
directory; the children run with the page cache and bytecode warm (one warm-up run each).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = """
from torch import nn


def net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1))
"""

FLOP_COUNTER = """
import sys
import torch
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, sys.argv[1])
from two_conv import net
model = net()
with FlopCounterMode(display=False) as counter:
    model(torch.zeros(1, 3, 32, 32))
print(counter.get_total_flops() // 2, sum(p.numel() for p in model.parameters()))
"""

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(cmd: list[str], cwd: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "two_conv.py").write_text(MODEL)
        commands = {
            "FlopCounterMode script": [sys.executable, "-c", FLOP_COUNTER, tmp],
            "dscalc profile": [sys.executable, "-m", "dscalc", "profile", "two_conv.py", "-i", "1x3x32x32"],
        }
        for cmd in commands.values():
            run(cmd, tmp)  # warm-up
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        wall: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                c, w = run(cmd, tmp)
                cpu[name].append(c)
                wall[name].append(w)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(f"{args.runs} interleaved rounds; load {load:.2f} per CPU at the end, {os.cpu_count()} CPUs")
    for name in commands:
        q = statistics.quantiles(cpu[name], n=4)
        print(f"{name:<24} CPU median {statistics.median(cpu[name]):.3f} s (IQR {q[2] - q[0]:.3f})   "
              f"wall median {statistics.median(wall[name]):.3f} s")
    ratios = sorted(a / b for a, b in zip(cpu["dscalc profile"], cpu["FlopCounterMode script"]))
    q = statistics.quantiles(ratios, n=4)
    print(f"\ndscalc profile / FlopCounterMode script, CPU, paired per round: median {statistics.median(ratios):.2f}x "
          f"(IQR {q[0]:.2f}-{q[2]:.2f}; issue 25 aims at 1.0x)")


if __name__ == "__main__":
    main()

"""Paired whole-process timing shared by the start-up benchmarks: every command run once per round, rounds
interleaved (so load that comes and goes hits each command alike), CPU time of the child from getrusage."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time


def run(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def rounds(commands: dict[str, list[str]], runs: int, env: dict[str, str],
           cwd: str | None = None) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU and wall seconds per command over `runs` interleaved rounds, after one warm-up run of each."""
    for cmd in commands.values():
        run(cmd, env, cwd)  # warm-up: page cache, .pyc files
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    wall: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            c, w = run(cmd, env, cwd)
            cpu[name].append(c)
            wall[name].append(w)
    return cpu, wall


def summary(cpu: dict[str, list[float]], wall: dict[str, list[float]], runs: int, width: int = 28) -> None:
    """The conditions and each command's medians."""
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(f"{runs} interleaved rounds; load {load:.2f} per CPU at the end, {os.cpu_count()} CPUs")
    for name in cpu:
        q = statistics.quantiles(cpu[name], n=4)
        print(f"{name:<{width}} CPU median {statistics.median(cpu[name]):.3f} s (IQR {q[2] - q[0]:.3f})   "
              f"wall median {statistics.median(wall[name]):.3f} s")


def ratio(a: list[float], b: list[float]) -> str:
    """The per-round ratio a/b: its median and interquartile range."""
    ratios = sorted(x / y for x, y in zip(a, b))
    q = statistics.quantiles(ratios, n=4)
    return f"median {statistics.median(ratios):.2f}x (IQR {q[0]:.2f}-{q[2]:.2f})"

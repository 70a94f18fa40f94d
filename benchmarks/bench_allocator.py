"""Why every timing starts from the allocator's steady state (`measure.timer.steady_allocator`): kernels timed in
a fresh process, with and without it, each in a process of its own - their median time and the minor page faults
a call takes (glibc's malloc unmapping and mapping again the blocks above its mmap threshold).

    python benchmarks/bench_allocator.py     # results: benchmarks/results/allocator.txt

"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (label, module code, input shape): NCHW depthwise convs at batch > 1 (large scratch buffers), a pointwise conv
#: and a whole model's worth of early-map convs for contrast
CASES = [
    ("depthwise k5 48x40² b16", "nn.Conv2d(48, 48, 5, padding=2, groups=48, bias=False)", (16, 48, 40, 40)),
    ("depthwise k3 512x10² b16", "nn.Conv2d(512, 512, 3, padding=1, groups=512, bias=False)", (16, 512, 10, 10)),
    ("depthwise k5 72x56² b1", "nn.Conv2d(72, 72, 5, padding=2, groups=72, bias=False)", (1, 72, 56, 56)),
    ("depthwise k3 32x112² b1", "nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)", (1, 32, 112, 112)),
    ("pointwise 96->64 56² b2", "nn.Conv2d(96, 64, 1, bias=False)", (2, 96, 56, 56)),
    ("conv k3 64->64 56² b1", "nn.Conv2d(64, 64, 3, padding=1, bias=False)", (1, 64, 56, 56)),
]

CHILD = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, {root!r})
import torch
from torch import nn
if {steady}:
    from dscalc.measure.timer import steady_allocator
    steady_allocator()
m = ({code}).eval()
x = torch.randn(*{shape})
with torch.no_grad():
    for _ in range(5):
        m(x)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(40):
        t = time.perf_counter(); m(x); times.append(time.perf_counter() - t)
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({{"median": statistics.median(times), "faults": (f1 - f0) / 40}}))
"""


def run(code: str, shape: tuple, steady: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), steady=steady, code=code, shape=shape)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per case and state (the median is kept)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "allocator.txt")
    args = ap.parse_args()
    import torch

    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"{'-'.join(platform.libc_ver())}, torch {torch.__version__}, {torch.get_num_threads()} threads; each "
             f"figure the median of {args.repeats} fresh processes (40 calls each, after 5 warm-up calls)", "",
             "| kernel | fresh process | page faults / call | steady allocator | page faults / call | fresh / steady |",
             "|---|---|---|---|---|---|"]
    for label, code, shape in CASES:
        res = {}
        for steady in (False, True):
            runs = sorted((run(code, shape, steady) for _ in range(args.repeats)), key=lambda r: r["median"])
            res[steady] = runs[len(runs) // 2]
        lines.append(f"| {label} | {1e6 * res[False]['median']:,.0f} µs | {res[False]['faults']:,.0f} | "
                     f"{1e6 * res[True]['median']:,.0f} µs | {res[True]['faults']:,.0f} | "
                     f"{res[False]['median'] / res[True]['median']:.2f}x |")
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

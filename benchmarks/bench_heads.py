"""Issue 30: measured latency of VGG16's three heads on this CPU - torchvision's Flatten -> Linear stack, the same
widths as 1x1 convs on the 7x7 map + global average pooling, and global average pooling + the same Linears - each
run on the (1, 512, 7, 7) map VGG16's features give, in paired interleaved rounds (torch.utils.benchmark), with
their MACs (FlopCounterMode / 2). The 13 convolutions before them are the same in all three and not timed.

    python benchmarks/bench_heads.py [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode


def heads() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Flatten(), nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                          nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))
    pointwise = nn.Sequential(nn.Conv2d(512, 4096, 1), nn.ReLU(True), nn.Dropout(), nn.Conv2d(4096, 4096, 1),
                              nn.ReLU(True), nn.Dropout(), nn.Conv2d(4096, 1000, 1), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten())
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 4096), nn.ReLU(True), nn.Dropout(),
                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 1000))
    return {"flatten + dense (vgg16)": dense.eval(), "pointwise-head": pointwise.eval(), "gap-head": gap.eval()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(1, 512, 7, 7)
    models = heads()
    macs = {}
    for name, m in models.items():
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            m(x)
        macs[name] = counter.get_total_flops() // 2
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for _ in range(args.rounds):  # interleaved: each round times every head once, in turn
            for name, m in models.items():
                t = benchmark.Timer("m(x)", globals={"m": m, "x": x}, num_threads=args.threads)
                times[name].append(t.blocked_autorange(min_run_time=0.3).median)
    base = "flatten + dense (vgg16)"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), "
          f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds, input 1x512x7x7")
    print(f"{'head':26} {'MACs':>15} {'MAC ratio':>10} {'median ms':>10} {'time ratio':>11}")
    for name in models:
        med = statistics.median(times[name])
        ratios = [a / b for a, b in zip(times[name], times[base])]  # paired, round by round
        print(f"{name:26} {macs[name]:>15,} {macs[name] / macs[base]:>10.3f} {med * 1e3:>10.2f} "
              f"{statistics.median(ratios):>11.3f}")


if __name__ == "__main__":
    main()

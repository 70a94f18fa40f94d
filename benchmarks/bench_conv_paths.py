"""How far apart torch's two CPU convolution kernels are: pairs of batch-1 float32 convs on either side of the
20,480-element input bound below which torch runs its native im2col + GEMM kernel instead of oneDNN's
(`measure.learned.torch_native_conv`), each named by the kernel torch's profiler says it ran, timed alternately.

    python benchmarks/bench_conv_paths.py [--output benchmarks/results/conv_paths.txt]

Per conv: the median of 9 blocks of 100 calls (after 50 warm-up calls), blocks of the pair alternating, and its
GFLOP/s. The step is what one line per kernel kind cannot follow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_predict import emit  # noqa: E402  (after the path: dscalc from this checkout)

#: (in channels, out channels, kernel, map side): each pair just below and just above the bound
PAIRS = [((404, 64, 1, 7), (420, 64, 1, 7)), ((404, 404, 1, 7), (420, 420, 1, 7)),
         ((100, 100, 3, 14), (108, 108, 3, 14)), ((200, 200, 3, 10), (208, 208, 3, 10)),
         ((24, 48, 1, 28), (28, 48, 1, 28))]
BLOCKS, CALLS, WARM = 9, 100, 50


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from torch import nn

    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.settings import cpu_model

    def kernel_ran(module: nn.Module, x: torch.Tensor) -> str:
        with torch.inference_mode(), torch.profiler.profile() as prof:
            module(x)
        names = {e.name for e in prof.events()}
        return "native" if "aten::_slow_conv2d_forward" in names else \
            "oneDNN" if "aten::mkldnn_convolution" in names else "?"

    lines = [f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}; load per CPU {machine_load():.2f} at the start", "",
             "| conv (batch 1) | input elements | kernel torch ran | median | GFLOP/s |", "|---|---|---|---|---|"]
    for pair in PAIRS:
        built = []
        for cin, cout, k, side in pair:
            module = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False).eval()
            built.append((module, torch.randn(1, cin, side, side)))
        blocks: list[list[float]] = [[] for _ in pair]
        with torch.inference_mode():
            for module, x in built:
                for _ in range(WARM):
                    module(x)
            for _ in range(BLOCKS):
                for i, (module, x) in enumerate(built):
                    start = time.perf_counter()
                    for _ in range(CALLS):
                        module(x)
                    blocks[i].append((time.perf_counter() - start) / CALLS)
        for (cin, cout, k, side), (module, x), times in zip(pair, built, blocks):
            t = statistics.median(times)
            flops = 2 * cin * cout * k * k * side * side
            lines.append(f"| {k}x{k} {cin}->{cout} on {side}² | {cin * side * side:,} | {kernel_ran(module, x)} | "
                         f"{t * 1e6:.1f} µs | {flops / t / 1e9:.1f} |")
    lines.append(f"\nload per CPU at the end: {machine_load():.2f}")
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

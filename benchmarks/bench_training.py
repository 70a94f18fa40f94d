"""`dscalc profile --training` at scale, as a whole process: the 12-billion-parameter model's training memory at
batch 1 (target: < 30 s), and the torchvision models the README quotes, each with wall time and peak RSS.

    python benchmarks/bench_training.py [--out benchmarks/results/bench_training.txt]

The model - 20 x nn.Conv2d(8192, 8192, 3, padding=1), 12.1e9 parameters, 48 GB in fp32 - is built on the meta
device and trained once (forward + backward) on fake CPU tensors: nothing is allocated. Every run writes the
machine (CPU model, threads, 1-minute load) beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIG = """
from torch import nn


def big():
    return nn.Sequential(*[nn.Conv2d(8192, 8192, 3, padding=1) for _ in range(20)])
"""


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return (f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}, "
            f"1-minute load {os.getloadavg()[0]:.2f}")


def run(args: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MiB) and the JSON of one `dscalc` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dscalc", *args, "-f", "json"], check=True, capture_output=True,
                         text=True).stdout
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, json.loads(out)


def in_process(path: Path) -> tuple[float, float, float]:
    """Seconds of the training trace alone (torch already imported), first and second run, and of `import torch`
    in a fresh process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    floor = time.perf_counter() - start
    import torch  # noqa: F401

    from dscalc.report.training import Options, model_training
    from dscalc.trace.source import ModelSource

    source = ModelSource.of(f"{path}:big")
    source.load("meta")
    times = []
    for _ in range(2):  # the first run also imports torch's fake-tensor machinery (torch._dynamo, sympy)
        start = time.perf_counter()
        model_training(source, [(1, 8192, 32, 32)], Options("adam"))
        times.append(time.perf_counter() - start)
    return times[0], times[1], floor


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB ({n:,} bytes)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    lines = [f"machine: {machine()}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.py"
        big.write_text(BIG)
        wall, rss, data = run(["profile", str(big), "--input", "1x8192x32x32", "--training"])
        t, m = data["training"]["totals"], data["training"]["memory"]
        lines += [f"20 x Conv2d(8192, 8192, 3), {t['trainable_params']:,} params, batch 1 (1x8192x32x32), adam, "
                  f"float32 - profile --training: {wall:.2f} s wall, peak RSS {rss:.0f} MiB (target < 30 s)",
                  f"  training MACs {t['training_macs']:,} (forward {t['forward_macs']:,}, grad-input "
                  f"{t['grad_input_macs']:,}, grad-weight {t['grad_weight_macs']:,})",
                  f"  weights {gib(m['weights'])}, gradients {gib(m['gradients'])}, optimizer state "
                  f"{gib(m['optimizer_state'])}, saved activations {gib(m['saved_activations'])}",
                  f"  peak {gib(m['peak'])} during the {m['peak_phase']}"]
        first, again, floor = in_process(big)
        lines += [f"  in process: the training trace alone takes {first:.2f} s the first time (importing torch's "
                  f"fake-tensor machinery included), {again:.2f} s the second; `import torch` alone takes "
                  f"{floor:.2f} s in a fresh process on this machine", ""]
    for model, shape in (("torchvision:resnet18", "2x3x64x64"), ("torchvision:mobilenet_v2", "1x3x224x224"),
                         ("torchvision:vit_b_16", "1x3x224x224")):
        wall, rss, data = run(["profile", model, "--input", shape, "--training"])
        t, m = data["training"]["totals"], data["training"]["memory"]
        lines.append(f"{model} {shape}: {wall:.2f} s wall, peak RSS {rss:.0f} MiB; training MACs "
                     f"{t['training_macs']:,}; saved {m['saved_activations']:,} bytes; peak {gib(m['peak'])}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

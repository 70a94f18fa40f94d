"""`dscalc profile` at scale and against a bare fvcore script, each as a whole process.

    python benchmarks/bench_profile.py

1. 20 x nn.Conv2d(8192, 8192, 3) (12 billion parameters, 48 GB in fp32) from a .py file: wall time and
   peak RSS (target: < 30 s, < 1.5 GB).
2. `dscalc profile torchvision:resnet50 --check fvcore` vs a script doing only fvcore's count (target <= 1.2x).
"""

from __future__ import annotations

import resource
import statistics
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
FVCORE = """
import torch, torchvision, warnings
warnings.simplefilter("ignore")
from fvcore.nn import FlopCountAnalysis
m = torchvision.models.resnet50(weights=None).eval()
with torch.no_grad():
    print(FlopCountAnalysis(m, torch.zeros(1, 3, 224, 224)).unsupported_ops_warnings(False).total())
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.py"
        big.write_text(BIG)
        wall, peak = timed([sys.executable, "-m", "dscalc", "profile", str(big), "--input", "1x8192x32x32",
                            "-f", "json"])
        print(f"20 x Conv2d(8192, 8192, 3), 12.1e9 params: {wall:.2f} s, peak RSS {peak:.0f} MiB")
    runs = 3
    ours = [timed([sys.executable, "-m", "dscalc", "profile", "torchvision:resnet50", "--input", "1x3x224x224",
                   "--check", "fvcore", "-f", "json"])[0] for _ in range(runs)]
    bare = [timed([sys.executable, "-c", FVCORE])[0] for _ in range(runs)]
    a, b = statistics.median(ours), statistics.median(bare)
    print(f"dscalc profile resnet50 --check fvcore: {a:.2f} s; bare fvcore script: {b:.2f} s; ratio {a / b:.2f}x")


if __name__ == "__main__":
    main()

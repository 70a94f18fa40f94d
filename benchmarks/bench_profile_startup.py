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
import sys
import tempfile
from pathlib import Path

import paired

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
        cpu, wall = paired.rounds(commands, args.runs, ENV, cwd=tmp)
    paired.summary(cpu, wall, args.runs, width=24)
    print(f"\ndscalc profile / FlopCounterMode script, CPU, paired per round: "
          f"{paired.ratio(cpu['dscalc profile'], cpu['FlopCounterMode script'])} (issue 25 aims at 1.0x)")


if __name__ == "__main__":
    main()

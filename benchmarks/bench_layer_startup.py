"""Cold start of `dscalc layer` as a whole process: against a bare typer + rich app printing one table (the floor
a typer CLI cannot go under), and against a one-layer fvcore script, in the same interleaved rounds.

    python benchmarks/bench_layer_startup.py [--runs 15] [--against /path/to/old/.venv/bin/python]

Each round runs every command once (so drift and load hit them alike); each command is measured by its CPU time
(user + system, from getrusage of the child: steadier than wall time on a shared machine) and its wall time.
Prints medians and the paired per-round ratio dscalc / bare app (issue 25: within 1.10x). The children run
without PYTHONDONTWRITEBYTECODE, as after a normal `pip install` (the warm-up run writes the bytecode).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import paired

FVCORE_ONE_LAYER = """
import torch
from fvcore.nn import FlopCountAnalysis
conv = torch.nn.Conv2d(64, 128, 3, padding=1, bias=False)
a = FlopCountAnalysis(conv, torch.zeros(1, 64, 56, 56))
a.unsupported_ops_warnings(False)
print(a.total())
"""

#: the team's reference floor: a typer app with one command that prints one rich table
BARE_APP = ("import typer\nfrom rich.console import Console\nfrom rich.table import Table\napp = typer.Typer()\n"
            "@app.command()\ndef layer(k: int = 3, cin: int = 64, cout: int = 128):\n"
            "    t = Table('kind', 'MACs'); t.add_row('standard', f'{k*k*cin*cout:,}'); Console().print(t)\napp()\n")

#: the same app with the options `dscalc layer` has (their types and defaults): typer builds a pydantic adapter per
#: option it processes, so this is the floor for a command with that many options
BARE_APP_LAYER_OPTIONS = (
    "import enum, pathlib\nimport typer\nfrom rich.console import Console\nfrom rich.table import Table\n"
    "E = enum.Enum('E', {k: k for k in ('standard', 'grouped', 'depthwise', 'float32', 'table', 'json')}, type=str)\n"
    "app = typer.Typer()\n@app.command()\n"
    "def layer(cin: int = 64, cout: int | None = None, k: str | None = None, size: str | None = None,"
    " height: int | None = None, width: int | None = None, stride: str = '1', padding: str = 'same',"
    " dilation: str = '1', groups: int = 1, depth_multiplier: int = 1, output_padding: str = '0', bias: bool = False,"
    " dims: int | None = None, batch: int = 1, kind: E | None = None, dtype: E = E.float32, time: bool = False,"
    " predict: bool = False, device: str = 'cpu', channels_last: bool = False, threads: int | None = None,"
    " tf32: bool = False, runtime: str = 'eager', training: bool = False, optimizer: str = 'adam',"
    " memory_limit: str | None = None, fmt: E = E.table, output: pathlib.Path | None = None):\n"
    "    t = Table('kind', 'MACs'); t.add_row('standard', f'{9*cin*(cout or 1):,}'); Console().print(t)\napp()\n")

COMMANDS = {
    "bare typer + rich app": [sys.executable, "-c", BARE_APP, "--k", "3"],
    "bare app, layer's 29 options": [sys.executable, "-c", BARE_APP_LAYER_OPTIONS, "--k", "3", "--cin", "64",
                                     "--cout", "128"],
    "dscalc layer": [sys.executable, "-m", "dscalc", "layer", "--k", "3", "--cin", "64", "--cout", "128"],
    "fvcore one-layer script": [sys.executable, "-c", FVCORE_ONE_LAYER],
}

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-fvcore", action="store_true", help="leave the fvcore script out (no torch import)")
    parser.add_argument("--against", metavar="PYTHON", help="also time `dscalc layer` under another interpreter "
                        "(an earlier checkout's venv), paired per round")
    args = parser.parse_args()
    commands = dict(COMMANDS)
    if args.no_fvcore:
        del commands["fvcore one-layer script"]
    if args.against:
        commands["dscalc layer (--against)"] = [args.against, *COMMANDS["dscalc layer"][1:]]
    cpu, wall = paired.rounds(commands, args.runs, ENV)
    paired.summary(cpu, wall, args.runs)
    print(f"\ndscalc layer / bare app, CPU, paired per round: "
          f"{paired.ratio(cpu['dscalc layer'], cpu['bare typer + rich app'])} (issue 25 aims at <= 1.10x)")
    with_options = paired.ratio(cpu["dscalc layer"], cpu["bare app, layer's 29 options"])
    print(f"dscalc layer / bare app with layer's options, CPU, paired per round: {with_options}")
    if args.against:
        pairs = sorted(a / b for a, b in zip(cpu["dscalc layer (--against)"], cpu["dscalc layer"]))
        print(f"--against / this dscalc layer, CPU, paired per round: median {statistics.median(pairs):.2f}x")
    if "fvcore one-layer script" in commands:
        ratio = statistics.median(wall["fvcore one-layer script"]) / statistics.median(wall["dscalc layer"])
        print(f"fvcore one-layer script / dscalc layer, wall: {ratio:.1f}x")


if __name__ == "__main__":
    main()

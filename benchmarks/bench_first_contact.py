"""First contact (issue 31, item 5), as whole processes in interleaved paired rounds:

    (a) the first `dscalc compare --k 3 --cin 64 --cout 128` with an empty cache (a fresh XDG_CACHE_HOME every
        round: it records torch's thread count, measures the quick ceilings and predicts from them; target < 10 s)
    (b) the same with a cached calibration (target: within 1.2x of (c), paired per round)
    (c) `dscalc layer --k 3 --cin 64 --cout 128` (counts only: the floor of a dscalc command)

    python benchmarks/bench_first_contact.py [--runs 7] [--note "taken under load"] [--output FILE]

The cached calibration of (b) is fitted from kernels recorded by a real calibration (tests/data/
calibration_samples.json: linear models, a learned forest per kind and the samples, the size of a real entry)
under this machine's key (what is timed is the path - reading, checking and predicting from an entry - not the
figures), beside this machine's quick ceilings and its recorded thread count, as a first contact leaves them.
Each command's CPU time (user + system of the child, from getrusage) and wall time; medians, and per-round
ratios with their IQR (benchmarks/paired.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paired

ARGS = ["--k", "3", "--cin", "64", "--cout", "128"]
#: the kernels a real calibration measured on this machine (tests/data): (b)'s entry is fitted from them, learned
#: forests of every kind and the samples included, as large as `dscalc device --calibrate` writes it
RECORDED = Path(__file__).resolve().parent.parent / "tests" / "data" / "calibration_samples.json"
COMMANDS = {
    "(a) compare, empty cache": [sys.executable, "-m", "dscalc", "compare", *ARGS],
    "(b) compare, cached calibration": [sys.executable, "-m", "dscalc", "compare", *ARGS],
    "(c) layer": [sys.executable, "-m", "dscalc", "layer", *ARGS],
}
#: the variables that would change what is measured (a cap on measurements, another cache)
CLEAN = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONDONTWRITEBYTECODE", "DSCALC_MAX_RUN_TIME", "XDG_CACHE_HOME")}


def cached_calibration(root: Path) -> None:
    """A first contact into `root` (threads.json, the quick ceilings), then a calibration fitted from the recorded
    kernels under this machine's key, learned forests included, as `dscalc device --calibrate` would write it."""
    env = {**CLEAN, "XDG_CACHE_HOME": str(root)}
    subprocess.run(COMMANDS["(a) compare, empty cache"], env=env, check=True, stdout=subprocess.DEVNULL)
    code = (
        "import json, time\nfrom dscalc.measure import calibrate, learned\n"
        "from dscalc.measure.ceilings import default_threads\n"
        "from dscalc.measure.predict import Calibration, fit_all, sample_from_list\n"
        "from dscalc.measure.settings import device_name, torch_version\n"
        "t = default_threads()\n"
        f"rows = json.load(open({str(RECORDED)!r}))['samples']\n"
        "samples = [sample_from_list(r) for r in rows]\n"
        "models = fit_all(samples)\n"
        "forests = learned.fit_learned(samples, models, guard=False)\n"
        "assert calibrate.save(Calibration('cpu', device_name('cpu', t), t, 'float32', False, 'eager',"
        " torch_version(), time.time(), 90.0, 1e11, models, 0.1, learned=forests, samples=tuple(samples),"
        " budget=120.0, adaptive=len(samples) - 88))\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    from dscalc.measure.settings import torch_version

    return (f"{model}, {os.cpu_count()} CPUs; python {platform.python_version()}, torch {torch_version()}, "
            f"{platform.platform()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--note", default="", help="the conditions, written beside the figures")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "first_contact.txt")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dscalc-first-contact-"))
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    try:
        cached = work / "cached"
        cached_calibration(cached)
        envs = {"(b) compare, cached calibration": {**CLEAN, "XDG_CACHE_HOME": str(cached)},
                "(c) layer": {**CLEAN, "XDG_CACHE_HOME": str(cached)}}

        def env_of(name: str, n: int) -> dict[str, str]:
            if name.startswith("(a)"):  # a fresh, empty cache every time
                return {**CLEAN, "XDG_CACHE_HOME": str(work / f"empty-{n}")}
            return envs[name]

        load_start = os.getloadavg()[0] / (os.cpu_count() or 1)
        for name, cmd in COMMANDS.items():  # warm-up: page cache, .pyc files
            paired.run(cmd, env_of(name, -1))
        cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
        wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for n in range(args.runs):
            for name, cmd in COMMANDS.items():
                c, w = paired.run(cmd, env_of(name, n))
                cpu[name].append(c)
                wall[name].append(w)
        a, b, c_ = COMMANDS
        say(f"# bench_first_contact, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
            + (f" - {args.note}" if args.note else ""))
        say(f"# {machine()}")
        say(f"# load per CPU (1-minute average): {load_start:.2f} at the start, "
            f"{os.getloadavg()[0] / (os.cpu_count() or 1):.2f} at the end")
        say(f"# {args.runs} interleaved rounds after one warm-up run of each; (a) in a fresh XDG_CACHE_HOME each "
            "round")
        say()
        for name in COMMANDS:
            qc, qw = statistics.quantiles(cpu[name], n=4), statistics.quantiles(wall[name], n=4)
            say(f"{name:<34} wall median {statistics.median(wall[name]):7.3f} s (IQR {qw[2] - qw[0]:.3f})   "
                f"CPU median {statistics.median(cpu[name]):7.3f} s (IQR {qc[2] - qc[0]:.3f})")
        say()
        say(f"(a) first contact, wall median {statistics.median(wall[a]):.2f} s (target < 10 s)")
        say(f"(b) / (c), wall, paired per round: {paired.ratio(wall[b], wall[c_])} (target <= 1.2x)")
        say(f"(b) / (c), CPU, paired per round:  {paired.ratio(cpu[b], cpu[c_])}")
        say(f"(a) / (c), wall, paired per round: {paired.ratio(wall[a], wall[c_])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()

"""The CLI fuzz campaign: generated command lines for all six commands, run in process through dscalc.cli.main,
each judged by the promise (no traceback, exit 0/1/2, one clear line on stderr for 1 and 2, JSON that parses for 0).

    python benchmarks/bench_fuzz.py [--per-command 300] [--seed 1] [--out benchmarks/results/fuzz.txt]

Prints (and writes) invocations per command, exit statuses, and every problem found: tracebacks, wrong exits,
unclear (multi-line or empty) messages, unparseable JSON, internal errors. --time runs each call once with a fixed
timing (paired timings are capped at 20 ms), and the device ceilings and calibration come from a fixed cache, so
the campaign tests the boundary, not the machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from conftest import run_in_process, write_fixed_cache  # noqa: E402
from fuzz_cli import STRATEGIES, judge, make_files, measure_once  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402


def fixed_cache(home: Path) -> None:
    """The tests' fixed ceilings and calibration (conftest.write_fixed_cache) in a temporary home: no call
    measures the machine or calibrates it."""
    from dscalc.measure import ceilings

    os.environ["HOME"] = str(home)
    os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
    write_fixed_cache(ceilings.device_name)


def quick_timer() -> None:
    from dscalc.measure import modules

    modules.measure = measure_once  # type: ignore[assignment]


def campaign(command: str, strategy, args, counts: collections.Counter[str], problems: list[str]) -> None:
    @seed(args.seed)
    @settings(max_examples=args.per_command, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(argv: list[str]) -> None:
        r = run_in_process(*argv)
        verdict = judge(argv, r.code, r.stdout, r.stderr)
        counts["invocations"] += 1
        counts[f"exit {r.code}"] += 1
        if not verdict.ok:
            counts[verdict.problem] += 1
            problems.append(f"{verdict.problem}: dscalc {' '.join(argv)} -> {r.code}: {r.stderr.strip()[:300]}")

    run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-command", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fuzz.txt"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dscalc-fuzz-"))
    fixed_cache(root / "home")
    quick_timer()
    files = make_files(root)
    stats: dict[str, collections.Counter[str]] = {c: collections.Counter() for c in STRATEGIES}
    problems: list[str] = []
    start = time.perf_counter()
    for command, strategy in STRATEGIES.items():
        campaign(command, strategy(files), args, stats[command], problems)
    wall = time.perf_counter() - start
    kinds = ("traceback", "exit", "unclear", "json", "internal")
    lines = [f"dscalc CLI fuzz campaign: seed {args.seed}, {args.per_command} examples per command, "
             f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, {wall:.0f} s", "",
             f"{'command':<9} {'invocations':>11} {'exit 0':>7} {'exit 1':>7} {'exit 2':>7} "
             + " ".join(f"{k:>9}" for k in kinds)]
    for command, c in stats.items():
        lines.append(f"{command:<9} {c['invocations']:>11} {c['exit 0']:>7} {c['exit 1']:>7} {c['exit 2']:>7} "
                     + " ".join(f"{c[k]:>9}" for k in kinds))
    total = sum((c for c in stats.values()), collections.Counter())
    lines.append(f"{'total':<9} {total['invocations']:>11} {total['exit 0']:>7} {total['exit 1']:>7} "
                 f"{total['exit 2']:>7} " + " ".join(f"{total[k]:>9}" for k in kinds))
    lines += ["", f"problems: {len(problems)}", *problems]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

"""The CLI fuzz campaign: generated command lines for all six commands, run in process through dscalc.cli.main,
each judged by the promise (no traceback, exit 0/1/2, one clear line on stderr for 1 and 2, JSON that parses for 0);
then the hostile families - every tests/hostile_*.py module (ONNX graphs, Keras archives, corrupted caches, closed
and full streams, --output oddities, ...) - each case run as a whole `dscalc` process under a time and a memory
bound (tests/fuzz_cli.run_case), its exit status, one-line stderr, peak RSS and wall time recorded.

    python benchmarks/bench_fuzz.py [--per-command 300] [--seed 1] [--out benchmarks/results/fuzz.txt]
    python benchmarks/bench_fuzz.py --hostile-only [--hostile-out benchmarks/results/fuzz_hostile.md]

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
from fuzz_cli import (  # noqa: E402
    CASE_MEMORY_BYTES,
    CASE_TIMEOUT_S,
    STRATEGIES,
    hostile_modules,
    judge,
    make_files,
    measure_once,
    problem,
    run_case,
)
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


def hostile(out: Path, root: Path, timeout: float, memory: int) -> None:
    """Every case of every hostile family as a whole process; a Markdown table of invocations tried and handled
    per family, the peak memory and wall time of each case, and every case not handled."""
    import shutil

    os.environ.setdefault("DSCALC_MAX_RUN_TIME", "0.02")  # a case that measures gets the tests' short budget
    rows: list[str] = []
    families: list[str] = []
    problems: list[str] = []
    start = time.perf_counter()
    for module in hostile_modules():
        tmp = root / f"hostile-{module.FAMILY}"
        tried = ok = 0
        peak = 0
        slowest = 0.0
        for case in module.cases(tmp):
            o = run_case(case, tmp, timeout=timeout, memory=memory)
            verdict = problem(case, o)
            tried += 1
            ok += not verdict
            peak, slowest = max(peak, o.peak_rss), max(slowest, o.wall)
            line = o.stderr.strip().splitlines()[-1][:110] if o.stderr.strip() else ""
            rows.append(f"| {module.FAMILY} | {case.name} | {case.streams} | {case.expect} | {o.code} | "
                        f"{o.peak_rss / 2**20:,.0f} | {o.wall:.1f} | {verdict or 'handled'} | "
                        f"{line.replace('|', '/')} |")
            if verdict:
                problems.append(f"- {module.FAMILY}: {case.name}: {verdict} (exit {o.code}): {line}")
            print(rows[-1], flush=True)
        families.append(f"| {module.FAMILY} | {tried} | {ok} | {tried - ok} | {peak / 2**20:,.0f} | {slowest:.1f} |")
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - start
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = "\n".join([
        "# Hostile families: whole-process runs",
        "",
        f"`python benchmarks/bench_fuzz.py --hostile-only`: {cpu}, {os.cpu_count()} CPUs, 1-minute load {load:.1f} "
        f"at the end (other work shared the machine), Python {platform.python_version()}, {wall:.0f} s. Each case "
        f"ran as the installed `dscalc` script under a {timeout:.0f} s time bound and a "
        f"{memory / 2**30:.0f} GiB address-space bound (RLIMIT_AS), its streams really closed (fd 1 or 2 closed) "
        "or full (/dev/full) where the case says; handled = the exit status the case expects, no traceback, no "
        "internal error, one `dscalc: error:` line for a failure (stderr open), no control character on stderr, "
        "the phrase the case names. Peak RSS is the dscalc process's own high-water mark (VmHWM, polled every "
        "20 ms until it exits).",
        "",
        "| family | invocations | handled | not handled | peak RSS, MiB (max) | wall, s (max) |",
        "|---|---:|---:|---:|---:|---:|",
        *families,
        "",
        f"Not handled: {len(problems)}",
        *problems,
        "",
        "| family | case | streams | expect | exit | peak RSS, MiB | wall, s | verdict | last stderr line |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
        *rows,
    ]) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-command", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fuzz.txt"))
    parser.add_argument("--hostile-out", default=str(Path(__file__).parent / "results" / "fuzz_hostile.md"))
    parser.add_argument("--hostile-only", action="store_true", help="run only the hostile families")
    parser.add_argument("--no-hostile", action="store_true", help="run only the generated command lines")
    parser.add_argument("--timeout", type=float, default=CASE_TIMEOUT_S, help="seconds per hostile case")
    parser.add_argument("--memory", type=float, default=CASE_MEMORY_BYTES / 2**30, help="GiB per hostile case")
    args = parser.parse_args()
    if args.hostile_only:
        hostile(Path(args.hostile_out), Path(tempfile.mkdtemp(prefix="dscalc-hostile-")), args.timeout,
                int(args.memory * 2**30))
        return
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
    if not args.no_hostile:
        hostile(Path(args.hostile_out), root, args.timeout, int(args.memory * 2**30))


if __name__ == "__main__":
    main()

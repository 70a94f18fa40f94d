"""How far does this machine drift? Re-measure the kernels a calibration measured, minutes later, with the same
protocol, and compare each with its recorded time: the share within 25% is a ceiling on any predictor's "kernels
within 25%" figure that is fitted on the first measurement and checked on a later one (issue 31).

    python benchmarks/bench_drift.py --cache DIR     # DIR: an XDG_CACHE_HOME holding a calibration
                                                     # (bench_predict.py's /tmp/dscalc-bench-predict-* keeps one)

Results: benchmarks/results/drift.txt (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--runtime", default="eager")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "drift.txt")
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = str(args.cache)

    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.settings import Settings, configured

    entries = json.loads((args.cache / "dscalc" / "calibration.json").read_text())
    entry = next(v for v in entries.values() if isinstance(v, dict) and v.get("runtime") == args.runtime)
    cal = calibrate.checked(entry)
    probes = {p.kernel.name: p for p in [*calibrate.design(cal.dtype), *calibrate.candidates(cal.dtype)]}
    settings = Settings(runtime=args.runtime, min_run_time=calibrate.MIN_RUN, max_run_time=calibrate.MAX_RUN)
    ago = time.time() - cal.measured_at
    rows = []
    with configured(settings):
        for s in cal.samples:
            probe = probes.get(s.kernel.name)
            if probe is None:
                continue
            t = calibrate.measure_probe(probe, settings).median
            if t:
                rows.append((s.kernel.kind, s.kernel.name, s.seconds, t))
    ratios = [t / s for _, _, s, t in rows]
    within = {x: sum(abs(r - 1) <= x for r in ratios) for x in (0.1, 0.25)}
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, runtime {args.runtime}; "
             f"calibration measured {ago / 60:.0f} min before; load per CPU now {machine_load():.2f}",
             f"kernels re-measured: {len(rows)} of {len(cal.samples)} (same protocol: {calibrate.MIN_RUN}-"
             f"{calibrate.MAX_RUN} s each)",
             f"again / first: median {statistics.median(ratios):.2f}, median |again / first - 1| "
             f"{statistics.median(abs(r - 1) for r in ratios):.0%}; within 10%: {within[0.1]}/{len(rows)} "
             f"({within[0.1] / len(rows):.0%}), within 25%: {within[0.25]}/{len(rows)} "
             f"({within[0.25] / len(rows):.0%})",
             "", "| kind | kernels | median again / first | within 25% |", "|---|---|---|---|"]
    for kind in sorted({r[0] for r in rows}):
        rs = [t / s for k, _, s, t in rows if k == kind]
        lines.append(f"| {kind} | {len(rs)} | {statistics.median(rs):.2f} | "
                     f"{sum(abs(r - 1) <= 0.25 for r in rs)}/{len(rs)} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

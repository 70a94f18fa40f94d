"""How far the measurements bench_predict.py scores its predictions against reproduce: two runs' CSVs of the same
held-out kernels and models (same seed, same machine), each measured again / measured first.

    python benchmarks/predict_repeat.py first.csv again.csv [--output benchmarks/results/predict_repeat.txt]

Issue 31's targets (kernels within ±25% of the measurement, models within ±15%) are only as reachable as the
measurement itself reproduces: where a kernel measured twice, a quarter of an hour apart by the same protocol,
agrees with itself within 25% for 61% of the kernels, no predictor can score 80% against either run. This prints
that ceiling beside each run's learned prediction, for the kernels and models both runs measured.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from bench_predict import emit, frac


def rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as f:
        return {(r["what"], r["name"]): r for r in csv.DictReader(f) if r["what"] in ("kernel", "model")}


def within(ratios: list[float], limit: float) -> str:
    """How many ratios lie within `limit` of 1, as bench_predict counts its errors."""
    return frac([abs(r - 1) for r in ratios], limit)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("again", type=Path)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    a, b = rows(args.first), rows(args.again)
    lines = [f"first: {args.first.name}, again: {args.again.name}", "",
             "| what | both measured | again / first, median | again within 25% of first | within 15% | "
             "learned within 25% / 15% of first | of again |", "|---|---|---|---|---|---|---|"]
    for what, limit in (("kernel", 0.25), ("model", 0.15)):
        keys = [k for k in a if k[0] == what and k in b and a[k]["measured_s"] and b[k]["measured_s"]]
        again = [float(b[k]["measured_s"]) / float(a[k]["measured_s"]) for k in keys]
        first_pred = [float(a[k]["learned_s"]) / float(a[k]["measured_s"]) for k in keys]
        again_pred = [float(b[k]["learned_s"]) / float(b[k]["measured_s"]) for k in keys]
        if not keys:
            continue
        lines.append(f"| {what}s | {len(keys)} | {statistics.median(again):.2f} | {within(again, 0.25)} | "
                     f"{within(again, 0.15)} | {within(first_pred, limit)} | {within(again_pred, limit)} |")
        if what == "model":
            lines += ["", "| model | first | again | again / first |", "|---|---|---|---|"]
            lines += [f"| {k[1]} | {1e3 * float(a[k]['measured_s']):.1f} ms | {1e3 * float(b[k]['measured_s']):.1f} ms "
                      f"| {r:.2f} |" for k, r in zip(keys, again)]
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Timing quality: the same layer measured several times (separate measurements) should agree.

    python benchmarks/bench_timing.py [--repeats 5] [--device cpu]

Prints each measurement's median and IQR, the largest deviation of one measurement's median from the
median of medians (target, issue #5: within 5%), and the full spread (max - min) / median of medians.
"""

from __future__ import annotations

import argparse
import statistics

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv
from dscalc.measure import modules
from dscalc.measure.settings import Settings, check_device, configured

CONFIGS = [("3x3 64->128 @56", dict(cin=64, cout=128, k=3, size=56)),
           ("3x3 256->256 @14", dict(cin=256, cout=256, k=3, size=14))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    check_device(args.device)
    settings = Settings(device=args.device)
    with configured(settings) as context:
        print(f"device: {context['device']}, threads {context['threads']}")
        for label, cfg in CONFIGS:
            layer = conv(cfg["cin"], cfg["cout"], cfg["k"], cfg["size"], padding="same")
            pair = separable_of(layer)
            assert pair is not None
            for name, measure in (
                ("standard", lambda layer=layer: modules.time_layer(layer, settings)),
                ("separable", lambda pair=pair: modules.time_pair(pair.depthwise, pair.pointwise, settings)),
            ):
                runs = [measure() for _ in range(args.repeats)]
                medians = [t.median for t in runs if t.median]
                mid = statistics.median(medians)
                spread = (max(medians) - min(medians)) / mid
                worst = max(abs(m - mid) for m in medians) / mid
                detail = ", ".join(f"{t.median * 1e6:.0f}±{t.iqr * 1e6:.0f}µs" for t in runs if t.median)
                print(f"{label:<18} {name:<9} max deviation {100 * worst:4.1f}%  spread {100 * spread:4.1f}%  "
                      f"(median±IQR: {detail})")


if __name__ == "__main__":
    main()

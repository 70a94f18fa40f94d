"""`dscalc sweep`: a grid of layer configs, each a standard conv beside its depthwise-separable pair - MAC speedup
(theory), predicted speedup and measured speedup, on each runtime asked for (one row per config and
runtime)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv
from dscalc.cost.records import SeparableComparison
from dscalc.errors import BadInput
from dscalc.measure.latency import PairLatency, pair_latency
from dscalc.measure.predictor import Predictor
from dscalc.measure.settings import Settings, configured

#: the most configs one sweep runs
MAX_CONFIGS = 2000


@dataclass(frozen=True)
class SweepRow:
    cin: int
    cout: int
    k: int
    size: int
    batch: int
    dtype: str
    channels_last: bool
    comparison: SeparableComparison
    pair: PairLatency
    runtime: str | None = None  # None: predicted only

    @property
    def name(self) -> str:
        return f"{self.cin}->{self.cout} k{self.k} {self.size}x{self.size} b{self.batch} {self.dtype}" + (
            " cl" if self.channels_last else "")

    @property
    def kind(self) -> str:
        return self.comparison.original.kind

    @property
    def params(self) -> int:
        return self.comparison.original.params

    @property
    def macs(self) -> int:
        return self.comparison.original.macs

    def to_dict(self) -> dict[str, Any]:
        p = self.pair
        measured = p.measured_speedup
        std, sep = p.original.timing, p.pair.timing
        original = self.comparison.original
        return {"cin": self.cin, "cout": self.cout, "k": self.k, "size": self.size, "batch": self.batch,
                "dtype": self.dtype, "channels_last": self.channels_last,
                "name": self.name, "kind": original.kind, "params": original.params, "macs": original.macs,
                "flops": original.flops,
                "separable_params": self.comparison.params, "separable_macs": self.comparison.macs,
                "mac_speedup": p.mac_speedup, "predicted_speedup": p.predicted_speedup,
                "measured_speedup": measured,
                "separable_wins": None if measured is None else measured > 1,
                "prediction_right": None if measured is None or p.predicted_speedup is None
                else (measured > 1) == (p.predicted_speedup > 1),
                "verdict": p.verdict_text,
                "standard_s": std.median if std else None,
                "separable_s": sep.median if sep else None,
                "reliable": None if std is None or sep is None else std.reliable and sep.reliable,
                "error": (std.error or (sep.error if sep else None)) if std else None,
                "runtime": self.runtime, "runtime_version": std.runtime_version if std else None,
                "runtime_settings": dict(std.runtime_settings) if std else None,
                "standard_setup_s": std.setup_s if std else None, "separable_setup_s": sep.setup_s if sep else None}


def grid_size(*axes: list[Any]) -> int:
    total = 1
    for axis in axes:
        total *= len(axis)
    return total


def run(cins: list[int], couts: list[int] | None, ks: list[int], sizes: list[int], batches: list[int],
        dtypes: list[str], formats: list[bool], settings: Settings | None, predictor: Predictor,
        progress: Callable[[], Any] | None = None, runtimes: list[str] | None = None) -> list[SweepRow]:
    """Every combination (cout follows cin when not given), predicted and, with settings, measured on each of
    `runtimes` (default: the settings' runtime) one after the other, config by config."""
    names = (runtimes or [settings.runtime]) if settings is not None else []
    total = grid_size(cins, couts or [0], ks, sizes, batches, dtypes, formats) * max(1, len(names))
    if total > MAX_CONFIGS:
        per = f" ({len(names)} runtimes each)" if len(names) > 1 else ""
        raise BadInput(f"the grid has {total:,} configs{per}; a sweep runs at most {MAX_CONFIGS:,}", "cin")
    grid = [(ci, co, k, s, b, d, cl) for ci in cins for co in (couts or [ci]) for k, s, b, d, cl
            in itertools.product(ks, sizes, batches, dtypes, formats)]
    rows = []
    for ci, cout, k, s, b, d, cl in grid:
        layer = conv(ci, cout, k, s, batch=b, padding="same", dtype=d)
        pair = separable_of(layer)
        if pair is None:
            raise BadInput("a 1x1 kernel has no separable counterpart", "k")
        if settings is None:
            rows.append(SweepRow(ci, cout, k, s, b, d, cl, pair, pair_latency(pair, predictor, None)))
            if progress is not None:
                progress()
        for name in names:
            assert settings is not None
            here = replace(settings, dtype=d, channels_last=cl, runtime=name)
            with configured(here):
                rows.append(SweepRow(ci, cout, k, s, b, d, cl, pair, pair_latency(pair, predictor, here), name))
            if progress is not None:
                progress()
    return rows

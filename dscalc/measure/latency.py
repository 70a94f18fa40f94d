"""Theory next to measurement: for a layer (and its depthwise-separable pair) or every weighted row of a network
or model, the predicted latency (`measure.predictor`: calibrated, else roofline) and, with timing settings, the
measured latency.
These are records like the counts: every output format shows them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from dscalc.cost.kinds import WEIGHTED, separable_of
from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.measure.predict import Prediction, speedup_interval
from dscalc.measure.predictor import Predictor
from dscalc.measure.settings import Settings, configured
from dscalc.measure.timer import Ratio, Timing, overlap
from dscalc.measure.verdict import Verdict, decide


@dataclass(frozen=True)
class Latency:
    """One kernel (or a pair run back to back): predicted and, where measured, measured latency."""

    name: str
    macs: int
    bytes: int
    predicted: Prediction | None
    timing: Timing | None  # None when not measured
    pair: PairLatency | None = None  # its depthwise-separable counterpart, where one was measured

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "macs": self.macs, "bytes": self.bytes}
        if self.predicted:
            row["predicted_s"] = self.predicted.seconds
            row["bound"] = self.predicted.bound
            row["prediction"] = self.predicted.to_dict()
        if self.timing is not None:
            row.update(self.timing.to_dict())
        if self.pair is not None:
            pair = self.pair.pair
            row["separable"] = {"macs": pair.macs, **(pair.timing.to_dict() if pair.timing else {}),
                                "speedup": self.pair.speedups(), "verdict": self.pair.verdict_text}
        return row


@dataclass(frozen=True)
class PairLatency:
    """Original vs separable: latency rows, the three speedups (theory, predicted, measured) and the verdict."""

    original: Latency
    depthwise: Latency
    pointwise: Latency
    pair: Latency
    ratio: Ratio | None = None  # original / pair over interleaved blocks (the measured speedup), where measured

    @property
    def mac_speedup(self) -> float:
        return self.original.macs / self.pair.macs

    @property
    def predicted_speedup(self) -> float | None:
        if self.original.predicted and self.pair.predicted:
            return self.original.predicted.seconds / self.pair.predicted.seconds
        return None

    @property
    def predicted_interval(self) -> tuple[float, float] | None:
        """The predicted speedup's interval, from the predictions' intervals (None where they have none)."""
        if self.original.predicted and self.pair.predicted:
            return speedup_interval(self.original.predicted, self.pair.predicted)
        return None

    @property
    def predicted_verdict(self) -> Verdict | None:
        """Who is predicted to win: too close to call when the predicted speedup's interval straddles 1."""
        interval = self.predicted_interval
        return decide(self.predicted_speedup, interval is not None and interval[0] <= 1 <= interval[1])

    @property
    def measured_speedup(self) -> float | None:
        if self.ratio is not None:
            return self.ratio.median
        a, b = self.original.timing, self.pair.timing
        if a is not None and b is not None and a.median and b.median:
            return float(a.median / b.median)
        return None

    @property
    def verdict(self) -> Verdict | None:
        """Who wins: too close to call when the paired ratio's interquartile range straddles 1 (or, unpaired, the
        two timings' IQRs overlap); None unmeasured. The evidence is `ratio` (or the two timings) beside it."""
        gain = self.measured_speedup
        if gain is None:
            return None
        return decide(gain, (not self.ratio.decided) if self.ratio is not None
                      else overlap(self.original.timing, self.pair.timing))

    @property
    def verdict_text(self) -> str | None:
        """The verdict as JSON and CSV spell it: 'separable wins', '<original> wins', 'too close to call'."""
        v = self.verdict
        return None if v is None else v.said(self.original.name)

    def speedups(self) -> dict[str, float | None]:
        interval = self.predicted_interval
        return {"macs": self.mac_speedup, "predicted": self.predicted_speedup, "measured": self.measured_speedup,
                **({"predicted_low": interval[0], "predicted_high": interval[1]} if interval else {})}

    @property
    def predicted_verdict_text(self) -> str | None:
        v = self.predicted_verdict
        return None if v is None else v.said(self.original.name)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in (self.original, self.depthwise, self.pointwise, self.pair)],
                "speedup": self.speedups(), "verdict": self.verdict_text,
                "predicted_verdict": self.predicted_verdict_text,
                "paired": self.ratio.to_dict() if self.ratio is not None else None}


def time_layer(layer: LayerCost, settings: Settings) -> Timing:
    """`modules.time_layer`, imported when a command times (predicting from a cached calibration builds no module)."""
    from dscalc.measure import modules

    return modules.time_layer(layer, settings)


def time_against(original: LayerCost, depthwise: LayerCost, pointwise: LayerCost,
                 settings: Settings) -> tuple[Timing, Timing, Ratio | None]:
    """`modules.time_against`, imported when a command times."""
    from dscalc.measure import modules

    return modules.time_against(original, depthwise, pointwise, settings)


def layer_latency(layer: LayerCost, predictor: Predictor, settings: Settings | None,
                  name: str | None = None) -> Latency:
    """One layer: predicted; measured when timing settings are given."""
    measured = time_layer(layer, settings) if settings else None
    return Latency(name or layer.name, layer.macs, layer.bytes, predictor.predict(layer), measured)


def pair_latency(comparison: SeparableComparison, predictor: Predictor | None,
                 settings: Settings | None) -> PairLatency:
    """Predict (with a predictor) and measure (with timing settings) the original and its separable pair."""

    def row(layer: LayerCost, name: str, measured: Timing | None = None) -> Latency:
        pred = predictor.predict(layer) if predictor else None
        if measured is None and settings:
            measured = time_layer(layer, settings)
        return Latency(name, layer.macs, layer.bytes, pred, measured)

    # the original and the pair in interleaved blocks (their ratio is the measured speedup); each half on its own
    original_t = pair_t = ratio = None
    if settings:
        original_t, pair_t, ratio = time_against(comparison.original, comparison.depthwise, comparison.pointwise,
                                                 settings)
    original = row(comparison.original, comparison.original.kind, original_t)
    dw, pw = row(comparison.depthwise, "depthwise"), row(comparison.pointwise, "pointwise")
    pair_pred = predictor.predict_pair(comparison)[2] if predictor else None
    pair = Latency("dw then pw", comparison.macs, comparison.bytes, pair_pred, pair_t)
    return PairLatency(original, dw, pw, pair, ratio)


def time_rows(rows: list[LayerCost], settings: Settings | None, predictor: Predictor,
              pairs: bool = False) -> list[Latency]:
    """Predicted latency of every weighted row and, with timing settings, its measured latency, each run on its
    own; with `pairs`, also of the depthwise-separable counterpart of every row that has one."""
    out = []
    with configured(settings) if settings else contextlib.nullcontext():
        for r in rows:
            if r.kind not in WEIGHTED:
                continue
            comparison = separable_of(r) if pairs else None
            if comparison is not None:
                measured = pair_latency(comparison, predictor, settings)
                out.append(replace(measured.original, name=r.name, pair=measured))
            else:
                out.append(layer_latency(r, predictor, settings))
    return out


def latency_sums(latencies: list[Latency]) -> tuple[float, float | None]:
    """Predicted and measured seconds summed over layers (measured: None unless every layer was measured)."""
    predicted = sum(lat.predicted.seconds for lat in latencies if lat.predicted)
    medians = [lat.timing.median if lat.timing is not None else None for lat in latencies]
    return predicted, sum(m for m in medians if m) if medians and all(medians) else None

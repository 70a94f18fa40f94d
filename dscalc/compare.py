"""Theory next to measurement for a layer and its depthwise-separable counterpart: exact MACs, roofline
prediction and measured latency of the original, the depthwise part, the pointwise part and the pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dscalc.records import LAYER_KINDS, LayerCost, SeparableComparison
from dscalc.roofline import Ceilings, Prediction, predict, predict_pair


@dataclass(frozen=True)
class Latency:
    name: str
    macs: int
    bytes: int
    predicted: Prediction | None
    timing: Any  # dscalc.timing.Timing, or None when not measured
    pair: Any = None  # PairLatency of its depthwise-separable counterpart, where one was measured

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "macs": self.macs, "bytes": self.bytes}
        if self.predicted:
            row["predicted_s"] = self.predicted.seconds
            row["bound"] = self.predicted.bound
        if self.timing is not None:
            row.update(self.timing.to_dict())
        if self.pair is not None:
            pair = self.pair.pair
            row["separable"] = {"macs": pair.macs, **(pair.timing.to_dict() if pair.timing else {}),
                                "speedup": {"macs": self.pair.mac_speedup, "predicted": self.pair.predicted_speedup,
                                            "measured": self.pair.measured_speedup}}
        return row


@dataclass(frozen=True)
class PairLatency:
    """Original vs separable: latency rows and the three speedups (theory, roofline, measured)."""

    original: Latency
    depthwise: Latency
    pointwise: Latency
    pair: Latency

    @property
    def mac_speedup(self) -> float:
        return self.original.macs / self.pair.macs

    @property
    def predicted_speedup(self) -> float | None:
        if self.original.predicted and self.pair.predicted:
            return self.original.predicted.seconds / self.pair.predicted.seconds
        return None

    @property
    def measured_speedup(self) -> float | None:
        a, b = self.original.timing, self.pair.timing
        if a is not None and b is not None and a.median and b.median:
            return float(a.median / b.median)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in (self.original, self.depthwise, self.pointwise, self.pair)],
                "speedup": {"macs": self.mac_speedup, "predicted": self.predicted_speedup,
                            "measured": self.measured_speedup}}


def pair_latency(comparison: SeparableComparison, ceilings: Ceilings | None, settings: Any | None) -> PairLatency:
    """Predict (with ceilings) and measure (with timing settings) the original and its separable pair."""
    from dscalc import timing as T

    def row(layer: LayerCost, name: str) -> Latency:
        pred = predict(layer, ceilings) if ceilings else None
        measured = T.time_layer(layer, settings) if settings else None
        return Latency(name, layer.macs, layer.bytes, pred, measured)

    original = row(comparison.original, comparison.original.kind)
    dw, pw = row(comparison.depthwise, "depthwise"), row(comparison.pointwise, "pointwise")
    pair_pred = None
    if ceilings:
        d, p, total = predict_pair(comparison, ceilings)
        pair_pred = Prediction(total, "2 kernels", d.compute_s + p.compute_s, d.memory_s + p.memory_s,
                               d.launch_s + p.launch_s)
    pair_timing = T.time_pair(comparison.depthwise, comparison.pointwise, settings) if settings else None
    pair = Latency("dw then pw", comparison.macs, comparison.bytes, pair_pred, pair_timing)
    return PairLatency(original, dw, pw, pair)


# ------------------------------------------------------------------------------ `dscalc compare` reports

def is_model(target: str) -> bool:
    """A model file or hub name, rather than a network (built-in name or .yaml)."""
    return target.startswith(("torchvision:", "timm:")) or target.split(":")[0].endswith((".py", ".pt", ".pt2",
                                                                                            ".pth", ".ts"))


def _ceilings(device: str, settings: Any = None) -> Ceilings:
    """The device's ceilings at the thread count the measurement will use."""
    from dscalc.device import get_ceilings

    return get_ceilings(device, threads=settings.threads if settings else None)[0]


def add_layer_latency(report: Any, layer: LayerCost, comparison: SeparableComparison | None, settings: Any,
                      device: str) -> None:
    """Add to a layer report the latency of the layer and its separable pair: predicted from the device's
    ceilings always, measured when timing settings are given (`layer --time`, `compare`)."""
    import contextlib

    from dscalc import timing
    from dscalc.roofline import predict
    from dscalc.views import latency_grid

    ceilings = _ceilings(device, settings)
    context = timing.describe(settings) if settings else {"device": ceilings.name}
    with timing.configured(settings) if settings else contextlib.nullcontext():
        if comparison is not None:
            pair: PairLatency | None = pair_latency(comparison, ceilings, settings)
            assert pair is not None
            rows, data = [pair.original, pair.depthwise, pair.pointwise, pair.pair], pair.to_dict()
        else:
            measured = timing.time_layer(layer, settings) if settings else None
            single = Latency(layer.kind, layer.macs, layer.bytes, predict(layer, ceilings), measured)
            pair, rows, data = None, [single], {"rows": [single.to_dict()]}
    report.grids.append(latency_grid(rows, pair, context))
    report.data["timing"] = {**context, **data}


def _side_by_side(title: str, names: tuple[str, str], values: list[tuple[str, Any, Any, str]]) -> Any:
    from dscalc.render import Column, Grid

    grid = Grid(title=title, columns=[Column("", "left"), Column(names[0]), Column(names[1]), Column("ratio")])
    for label, a, b, kind in values:
        if a is None or b is None:
            grid.add(label, "-" if a is None else _fmt(a, kind), "-" if b is None else _fmt(b, kind), "")
        else:
            grid.add(label, _fmt(a, kind), _fmt(b, kind), f"{b / a:.3f}" if a else "-")
    return grid


def _fmt(value: Any, kind: str) -> str:
    from dscalc.units import exact, seconds

    return seconds(value) if kind == "s" else exact(value)


def network_comparison(name: str, alpha: float, resolution: int | None, as_: str, batch: int, dtype: str,
                       settings: Any, device: str) -> Any:
    """A network and its --as variant: totals, roofline-predicted and (with settings) measured latency,
    each the sum over the conv/linear layers run one by one."""
    from dscalc import network as N
    from dscalc.render import Report
    from dscalc.views import totals

    spec = N.load(name)
    original = N.build(spec, alpha=alpha, resolution=resolution, batch=batch, dtype=dtype)
    variant = N.build(spec, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype)
    ceilings = _ceilings(device, settings)
    (p0, m0), (p1, m1) = (latency_sums(time_rows(rows, settings, device)) for rows in (original, variant))
    t0, t1 = totals(original), totals(variant)
    names = (spec.name, f"as {as_}")
    values = [("params", t0["params"], t1["params"], "n"), ("weights", t0["weights"], t1["weights"], "n"),
              ("MACs", t0["macs"], t1["macs"], "n"), ("predicted (sum of layers)", p0, p1, "s"),
              ("measured (sum of layers)", m0, m1, "s")]
    grid = _side_by_side(f"{spec.name} vs every conv as {as_} ({ceilings.name})", names, values)
    grid.caption = "latency: each conv/linear layer timed (or predicted) on its own, summed; BN/activations excluded"
    first: dict[str, Any] = {**t0, "predicted_s": p0, "measured_s": m0}
    second: dict[str, Any] = {**t1, "predicted_s": p1, "measured_s": m1}
    data = {"command": "compare", "network": spec.name, "as": as_, "device": ceilings.name,
            "original": first, "variant": second}
    records = [{"name": names[0], **first}, {"name": names[1], **second}]
    return Report(data=data, records=records, grids=[grid])


def model_comparison(target: str, inputs: list[str], settings: Any, device: str) -> Any:
    """A PyTorch model and its separable copy: per-model totals, and (with settings) end-to-end latency."""
    from dscalc import loaders
    from dscalc.convert import separable_copy
    from dscalc.profile import profile_model
    from dscalc.render import Report

    shapes = [loaders.parse_input(s) for s in inputs]
    # one model: on meta when only counting; random-initialised on the CPU when it will also be timed
    # (uninitialised memory could hold denormals, which skew CPU timings)
    model = loaders.load(target, device="cpu" if settings is not None else "meta")
    converted, replaced = separable_copy(model)
    a, b = profile_model(model, shapes), profile_model(converted, shapes)
    m0 = m1 = None
    if settings is not None:
        m0 = time_module(model, shapes, settings, target).median
        m1 = time_module(converted, shapes, settings, f"{target} (separable)").median
    values = [("params", a.totals["params"], b.totals["params"], "n"),
              ("MACs", a.totals["macs"], b.totals["macs"], "n"), ("measured end to end", m0, m1, "s")]
    grid = _side_by_side(f"{target} vs its separable copy ({replaced} convs replaced)", (target, "separable"), values)
    first: dict[str, Any] = {**a.totals, "measured_s": m0}
    second: dict[str, Any] = {**b.totals, "measured_s": m1}
    data = {"command": "compare", "model": target, "replaced": replaced, "original": first, "variant": second}
    return Report(data=data, records=[{"name": "original", **first}, {"name": "separable", **second}], grids=[grid])


def latency_sums(latencies: list[Latency]) -> tuple[float, float | None]:
    """Predicted and measured seconds summed over layers (measured: None unless every layer was measured)."""
    predicted = sum(lat.predicted.seconds for lat in latencies if lat.predicted)
    medians = [lat.timing.median if lat.timing is not None else None for lat in latencies]
    return predicted, sum(m for m in medians if m) if medians and all(medians) else None


def time_rows(rows: list[LayerCost], settings: Any, device: str, pairs: bool = False) -> list[Latency]:
    """Predicted latency of every conv/linear row and, with timing settings, its measured latency, each run on
    its own; with `pairs`, also of the depthwise-separable counterpart of every standard conv with k > 1."""
    import contextlib
    from dataclasses import replace

    from dscalc import timing
    from dscalc.layers import separable_of
    from dscalc.roofline import predict

    ceilings = _ceilings(device, settings)
    out = []
    with timing.configured(settings) if settings else contextlib.nullcontext():
        for r in rows:
            if r.kind not in LAYER_KINDS:
                continue
            comparison = separable_of(r) if pairs else None
            if comparison is not None:
                measured = pair_latency(comparison, ceilings, settings)
                out.append(replace(measured.original, name=r.name, pair=measured))
            else:
                timed = timing.time_layer(r, settings) if settings else None
                out.append(Latency(r.name, r.macs, r.bytes, predict(r, ceilings), timed))
    return out


def time_model(target: str, kwargs: str | None, shapes: list[tuple[int, ...]], settings: Any) -> Any:
    """End-to-end latency of the model, built with random weights."""
    from dscalc import loaders

    return time_module(loaders.load(target, kwargs=kwargs, device="cpu"), shapes, settings, target)


def time_module(model: Any, shapes: list[tuple[int, ...]], settings: Any, label: str) -> Any:
    """End-to-end latency of a materialized model on the timing device, dtype and memory format."""
    import torch

    from dscalc import timing

    dtype = timing.DTYPES[settings.dtype]
    try:
        model = model.to(device=settings.device, dtype=dtype).eval()
        xs = [torch.randn(s, device=settings.device, dtype=dtype) for s in shapes]
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
            xs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs]
    except torch.cuda.OutOfMemoryError:
        return timing.Timing(None, None, 0, 0, "out of memory")
    with timing.configured(settings):
        return timing.measure(lambda: model(*xs), settings, label)

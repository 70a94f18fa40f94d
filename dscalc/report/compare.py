"""`dscalc compare`: the original and its variant side by side - a layer and its separable pair, a network and
its `--as` rewrite, or a model and its separable copy - with params, MACs, predicted and (with timing settings)
measured latency."""

from __future__ import annotations

from typing import Any

from dscalc.cost import network as N
from dscalc.cost.spec import LayerSpec
from dscalc.cost.totals import totals
from dscalc.errors import BadInput
from dscalc.measure.latency import latency_sums, time_rows
from dscalc.measure.modules import time_module
from dscalc.measure.predictor import predictor_for
from dscalc.measure.settings import Settings, configured
from dscalc.report import layer as layer_report
from dscalc.report.fmt import exact, seconds
from dscalc.report.model import Column, Grid, Report, name
from dscalc.trace.convert import separable_copy
from dscalc.trace.profile import profile_model
from dscalc.trace.source import ModelSource


def _side_by_side(title: str, names: tuple[str, str], values: list[tuple[str, Any, Any, str]]) -> Grid:
    grid = Grid(title=title, columns=[name(""), Column(names[0]), Column(names[1]), Column("ratio")])
    for label, a, b, kind in values:
        shown = [("-" if v is None else seconds(v) if kind == "s" else exact(v)) for v in (a, b)]
        grid.add(label, *shown, f"{b / a:.3f}" if a and b is not None else "")
    return grid


def layer(spec: LayerSpec, settings: Settings | None, device: str = "cpu") -> Report:
    """A layer and its separable pair: counts, prediction, and (with settings) measurement."""
    report = layer_report.build(spec, settings, command="compare", predict=True, device=device)
    if "separable" not in report.data:
        raise BadInput(f"a {report.data['rows'][0]['kind']} layer has no depthwise-separable counterpart", "k")
    return report


def network(target: str, *, alpha: float, resolution: int | None, as_: str, batch: int, dtype: str,
            settings: Settings | None, device: str = "cpu") -> Report:
    """A network and its `--as` variant: totals, predicted and (with settings) measured latency, each the
    sum over the weighted layers run one by one."""
    spec = N.load(target)
    original = N.build(spec, alpha=alpha, resolution=resolution, batch=batch, dtype=dtype)
    variant = N.build(spec, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype)
    predictor = predictor_for(settings, device)
    (p0, m0), (p1, m1) = (latency_sums(time_rows(rows, settings, predictor)) for rows in (original, variant))
    t0, t1 = totals(original), totals(variant)
    names = (spec.name, f"as {as_}")
    values = [("params", t0["params"], t1["params"], "n"), ("weights", t0["weights"], t1["weights"], "n"),
              ("MACs", t0["macs"], t1["macs"], "n"), ("predicted (sum of layers)", p0, p1, "s"),
              ("measured (sum of layers)", m0, m1, "s")]
    grid = _side_by_side(f"{spec.name} vs every conv as {as_} ({predictor.name})", names, values)
    grid.caption = "latency: each weighted layer timed (or predicted) on its own, summed; BN/activations excluded"
    first: dict[str, Any] = {**t0, "predicted_s": p0, "measured_s": m0}
    second: dict[str, Any] = {**t1, "predicted_s": p1, "measured_s": m1}
    data = {"command": "compare", "network": spec.name, "as": as_, "device": predictor.name,
            "original": first, "variant": second}
    records = [{"name": names[0], "kind": "network", **first}, {"name": names[1], "kind": "network", **second}]
    return Report("compare", data, records, [grid])


def model(source: ModelSource, shapes: list[tuple[int, ...]], settings: Settings | None) -> Report:
    """A model and its separable copy: totals, and (with settings) end-to-end latency. The model is built once:
    on meta when only counting, on the CPU with random weights when it is also timed."""
    source.check_convertible()
    original = source.load("cpu" if settings is not None else "meta")
    converted, replaced = separable_copy(original)
    a, b = profile_model(original, shapes), profile_model(converted, shapes)
    m0 = m1 = None
    if settings is not None:
        with configured(settings):
            m0 = time_module(original, shapes, settings, source.target).median
            m1 = time_module(converted, shapes, settings, f"{source.target} (separable)", own=True).median
    values = [("params", a.totals["params"], b.totals["params"], "n"),
              ("MACs", a.totals["macs"], b.totals["macs"], "n"), ("measured end to end", m0, m1, "s")]
    convs = f"{replaced} conv{'s' if replaced != 1 else ''} replaced"
    grid = _side_by_side(f"{source.target} vs its separable copy ({convs})", (source.target, "separable"), values)
    first: dict[str, Any] = {**a.totals, "measured_s": m0}
    second: dict[str, Any] = {**b.totals, "measured_s": m1}
    data = {"command": "compare", "model": source.target, "replaced": replaced, "original": first,
            "variant": second}
    records = [{"name": "original", "kind": "model", **first}, {"name": "separable", "kind": "model", **second}]
    return Report("compare", data, records, [grid])

"""`dscalc compare`, drawn: the original and its variant side by side - a layer and its separable pair, a network
and its `--as` rewrite, or a model and its separable copy - with params, MACs, predicted and measured latency
(one runtime, or several side by side) and the training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.report import layer as layer_report
from dscalc.report.fmt import exact, seconds
from dscalc.report.heads import add_head_rows, add_model_head_notes, model_title, variant_title
from dscalc.report.model import Column, Grid, Report, name

if TYPE_CHECKING:
    from dscalc.study.compare import CompareStudy, Side


def _side_by_side(title: str, names: tuple[str, str], values: list[tuple[str, Any, Any, str]]) -> Grid:
    grid = Grid(title=title, columns=[name(""), Column(names[0]), Column(names[1]), Column("ratio")])
    for label, a, b, kind in values:
        shown = [("-" if v is None else seconds(v) if kind == "s" else exact(v)) for v in (a, b)]
        grid.add(label, *shown, f"{b / a:.3f}" if a and b is not None else "")
    return grid


def _first(side: Side) -> float | None:
    return side.measured_s[0] if side.measured_s else None


def draw(study: CompareStudy) -> Report:
    if study.layer is not None:
        return layer_report.draw(study.layer)
    if study.by_runtime:
        from dscalc.report import runtimes

        report = runtimes.compare_network(study) if study.of == "network" else runtimes.compare_model(study)
    else:
        report = network(study) if study.of == "network" else model(study)
    if study.training is not None:
        from dscalc.report import training

        training.add_compare(report, study)
    if study.assumed:  # the assumption line: which input size was used
        report.grids[0].notes.insert(0, study.assumed)
        report.data["notes"] = [study.assumed, *report.data.get("notes", [])]
    return report


def network(study: CompareStudy) -> Report:
    """A network and its `--as` variant: totals, predicted and (measured) latency, each the sum over the weighted
    layers run one by one."""
    a, b = study.original, study.variant
    assert a is not None and b is not None
    t0, t1 = a.totals, b.totals
    p0, p1, m0, m1 = a.predicted_s, b.predicted_s, _first(a), _first(b)
    names = (a.name, b.name)
    values = [("params", t0["params"], t1["params"], "n"), ("weights", t0["weights"], t1["weights"], "n"),
              ("MACs", t0["macs"], t1["macs"], "n"), ("predicted (sum of layers)", p0, p1, "s"),
              ("measured (sum of layers)", m0, m1, "s")]
    grid = _side_by_side(f"{a.name} vs {variant_title(study.as_)} ({study.device})", names, values)
    grid.caption = "latency: each weighted layer timed (or predicted) on its own, summed; BN/activations excluded"
    first: dict[str, Any] = {**t0, "predicted_s": p0, "measured_s": m0}
    second: dict[str, Any] = {**t1, "predicted_s": p1, "measured_s": m1}
    data = {"command": "compare", "network": a.name, "as": study.as_, "device": study.device,
            "original": first, "variant": second}
    add_head_rows(grid, data, study)
    records = [{"name": names[0], "kind": "network", **first}, {"name": names[1], "kind": "network", **second}]
    return Report("compare", data, records, [grid])


def model(study: CompareStudy) -> Report:
    """A model and its separable copy: totals, and (measured) end-to-end latency."""
    a, b = study.original, study.variant
    assert a is not None and b is not None
    m0, m1 = _first(a), _first(b)
    values = [("params", a.totals["params"], b.totals["params"], "n"),
              ("MACs", a.totals["macs"], b.totals["macs"], "n"), ("measured end to end", m0, m1, "s")]
    title, label = model_title(study)
    grid = _side_by_side(title, (study.target, label), values)
    first: dict[str, Any] = {**a.totals, "measured_s": m0}
    second: dict[str, Any] = {**b.totals, "measured_s": m1}
    data = {"command": "compare", "model": study.target, "replaced": study.replaced, "original": first,
            "variant": second}
    add_model_head_notes(grid, data, study)
    records = [{"name": "original", "kind": "model", **first}, {"name": label, "kind": "model", **second}]
    return Report("compare", data, records, [grid])

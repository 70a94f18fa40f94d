"""`dscalc layer` (and `compare` of a layer), drawn: one layer and, where one exists, its depthwise-separable
counterpart, with the closed forms; its predicted and measured latency; its training step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.cost.kinds import formula, label, separable_formula
from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.report.fmt import exact, ratio, shape, si, times
from dscalc.report.model import CONVENTIONS, Column, Grid, Report, name

if TYPE_CHECKING:
    from dscalc.measure.latency import Latency
    from dscalc.study.layer import LayerStudy
    from dscalc.study.records import Run


def layer_row(layer: LayerCost) -> dict[str, Any]:
    """The base keys of every layer-like row, in every command's JSON and CSV."""
    return layer.to_dict()


def _cells(layer: LayerCost, shown: str | None = None) -> list[str]:
    return [shown or label(layer), shape(layer.output_shape), exact(layer.params), exact(layer.macs),
            si(layer.flops), f"{layer.intensity:.1f}"]


def counts(layer: LayerCost, comparison: SeparableComparison | None, assumptions: list[str],
           command: str = "layer") -> Report:
    """The counts: the layer, its separable pair, their ratio and the closed forms."""
    rows = [layer] if comparison is None else [layer, comparison.depthwise, comparison.pointwise]
    data: dict[str, Any] = {"command": command, "conventions": CONVENTIONS, "assumptions": assumptions,
                            "rows": [layer_row(r) for r in rows]}
    records = [layer_row(r) for r in rows]
    if comparison is not None:
        data.update(comparison.to_dict())
        records.append({"name": "separable", "kind": "separable", **comparison.to_dict()["separable"]})

    grid = Grid(
        title=f"{label(layer)}: {shape(layer.input_shape)} -> {shape(layer.output_shape)}",
        columns=[name("layer"), Column("output", "left"), Column("params"), Column("MACs"), Column("FLOPs"),
                 Column("FLOP/B")],
        caption="; ".join(assumptions),
    )
    sym, num = formula(layer)
    if comparison is None:
        grid.add(*_cells(layer))
        grid.notes.append(f"{layer.kind} MACs = {sym} = {num} = {exact(layer.macs)}")
        return Report(command, data, records, [grid])
    dw, pw = comparison.depthwise, comparison.pointwise
    grid.add(*_cells(layer), end_section=True)
    grid.add(*_cells(dw))
    grid.add(*_cells(pw), end_section=True)
    grid.add("separable = dw + pw", "", exact(comparison.params), exact(comparison.macs), si(comparison.flops),
             f"{comparison.flops / comparison.bytes:.1f}")
    grid.add(f"separable/{layer.kind}", "", ratio(comparison.params_ratio), ratio(comparison.macs_ratio), "", "")
    grid.add("fewer by", "", times(comparison.params_ratio), times(comparison.macs_ratio), "", "")
    (dw_sym, dw_num), (pw_sym, pw_num) = formula(dw), formula(pw)
    closed_sym, closed_num = separable_formula(comparison)
    grid.notes += [
        f"{layer.kind:<9} {sym} = {num} = {exact(layer.macs)} MACs",
        f"separable {dw_sym} + {pw_sym}",
        f"          = {dw_num} + {pw_num}",
        f"          = {exact(dw.macs)} + {exact(pw.macs)} = {exact(comparison.macs)} MACs",
        f"ratio     {closed_sym} = {closed_num} = {ratio(comparison.closed_form)} (closed form)",
        f"          exact counts: {exact(comparison.macs)} / {exact(layer.macs)} = {ratio(comparison.macs_ratio)}",
    ]
    return Report(command, data, records, [grid])


def add_latency(report: Report, run: Run) -> None:
    """Predicted (always) and measured (when measured) latency of the layer and its pair: a grid, the JSON
    `timing` object, and timing columns on each CSV row."""
    from dscalc.report import latency as lat

    pair, rows, context = run.pair, list(run.rows), run.context
    if pair is not None:
        data = pair.to_dict()
        by_record: dict[str, Latency] = dict(zip([r["name"] for r in report.records], rows))
    else:
        data = {"rows": [rows[0].to_dict()]}
        by_record = {report.records[0]["name"]: rows[0]}
    report.grids.append(lat.layer_grid(rows, pair, context))
    report.data["timing"] = {**context, **data}
    lat.attach(report.records, by_record)
    if pair is not None:  # the verdict belongs to the separable row of the CSV
        report.records[-1]["timing"].update(speedup=pair.speedups(), verdict=pair.verdict_text)


def draw(study: LayerStudy) -> Report:
    """The report of one layer: its counts; its latency (one runtime, or several side by side); its training."""
    report = counts(study.layer, study.comparison, list(study.assumptions), study.command)
    if study.by_runtime:
        from dscalc.report import runtimes

        runtimes.add_layer_runs(report, study.runs)
    elif study.runs:
        add_latency(report, study.runs[0])
    if study.training is not None:
        from dscalc.report import training

        training.add_layer(report, study)
    return report

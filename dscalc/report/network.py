"""`dscalc network`, drawn: a declared network layer by layer - per-layer params and MACs with their share, totals under
every counting convention, the MobileNets paper's Table 2 by kind; with timing settings, every weighted layer
predicted and measured."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.cost.kinds import KINDS, WEIGHTED
from dscalc.cost.records import LayerCost
from dscalc.cost.totals import by_kind, paper_label, totals
from dscalc.report import latency as lat
from dscalc.report.fmt import exact, in_out, seconds, shape, si
from dscalc.report.layer import layer_row
from dscalc.report.model import COMPUTE_KINDS, CONVENTIONS, Column, Grid, Report, name, text
from dscalc.report.render import bar

if TYPE_CHECKING:
    from dscalc.measure.latency import Latency
    from dscalc.study.network import NetworkListStudy, NetworkStudy
    from dscalc.study.records import Run



def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def builtins(study: NetworkListStudy) -> Report:
    """`dscalc network --list`: each built-in network, one line."""
    specs = study.specs
    grid = Grid(title="built-in networks", columns=[name("name"), Column("input", "left"), text("description")],
                caption="dscalc network NAME [--alpha A] [--resolution R] "
                        "[--as separable|standard|pointwise-head|gap-head]")
    records = []
    for spec in specs:
        grid.add(spec.name, shape(spec.input), spec.description)
        records.append({"name": spec.name, "input": list(spec.input), "description": spec.description})
    return Report("network", {"command": "network", "builtins": records}, records, [grid])


def counts(rows: list[LayerCost], meta: dict[str, Any], all_layers: bool = False,
           latency: dict[str, Latency] | None = None) -> Report:
    """Per-layer table, totals and the Table 2 breakdown (and, with `latency`, the predicted/measured columns)."""
    tot = totals(rows)
    kinds = by_kind(rows)
    data: dict[str, Any] = {"command": "network", **meta, "conventions": CONVENTIONS,
                            "rows": [layer_row(r) for r in rows], "totals": tot, "by_kind": kinds}
    records = [layer_row(r) for r in rows]
    grid = Grid(
        title=f"{meta['network']}: {shape(rows[0].input_shape)} -> {shape(rows[-1].output_shape)}",
        columns=[name("layer"), text("type"), text("input -> output"), Column("params"), Column("MACs"),
                 Column("share of MACs", "left")]
        + ([Column("predicted"), Column("measured")] if latency is not None else []),
        caption=(f"alpha {meta['alpha']}, resolution {meta['resolution']}"
                 + (f", every conv as {meta['as']}" if meta.get("as") else "")
                 + ("" if all_layers else "; BN/activation/dropout rows: --all-layers or --format json")),
    )
    for r in rows:
        if not all_layers and r.kind not in COMPUTE_KINDS:
            continue
        share = r.macs / tot["macs"] if tot["macs"] else 0.0
        short = KINDS[r.kind].short if r.kind in WEIGHTED else r.kind
        cells = [r.name, f"{short} {r.geometry()}".strip(), in_out(r.input_shape, r.output_shape), exact(r.params),
                 exact(r.macs), f"{bar(share, 8):<8} {100 * share:4.1f}%" if r.macs else ""]
        if latency is not None:
            one = latency.get(r.name)
            cells += ["", ""] if one is None else [lat.predicted_cell(one.predicted),
                                                   lat.measured_cell(one.timing)]
        grid.add(*cells)

    summary = Grid(title="totals", columns=[name(""), Column("count"), Column("")])
    for label, value in (("MACs (conv + linear, bias excluded)", tot["macs"]), ("FLOPs (2 x MACs)", tot["flops"]),
                         ("params (learnable: weights + bias + BN affine)", tot["params"]),
                         ("weights (conv/linear only: the paper's count)", tot["weights"]),
                         ("buffers (BN running mean/var; Keras adds them)", tot["buffers"]),
                         ("params + buffers (Keras 'Total params')", tot["params"] + tot["buffers"])):
        summary.add(label, exact(value), si(value))
    table2 = Grid(title="by kind (MobileNets paper, Table 2)",
                  columns=[name("type"), Column("MACs"), Column("share"), Column("weights"),
                           Column("share"), Column("params")])
    for kind, v in kinds.items():
        table2.add(paper_label(kind), exact(v["macs"]), _share(v["macs"], tot["macs"]), exact(v["weights"]),
                   _share(v["weights"], tot["weights"]), exact(v["params"]))
    return Report("network", data, records, [grid, summary, table2])


def draw(study: NetworkStudy) -> Report:
    """The report of a network: its layers and totals; every weighted layer's latency (one runtime, or several
    side by side); its training step."""
    rows, meta = list(study.layers), study.meta
    if not study.runs or study.by_runtime:
        report = counts(rows, meta, study.all_layers)
        if study.by_runtime:
            from dscalc.report import runtimes

            runtimes.add_network_runs(report, study)
    else:
        report = _timed(study, study.runs[0])
    if study.training is not None:
        from dscalc.report import training

        training.add_network(report, study)
    return report


def _timed(study: NetworkStudy, run: Run) -> Report:
    per_layer, context = list(run.rows), run.context
    by_name = {one.name: one for one in per_layer}
    report = counts(list(study.layers), study.meta, study.all_layers, by_name)
    predicted, measured = lat.sums(per_layer)
    report.grids[1].add("latency, predicted (sum of weighted layers)", seconds(predicted), "")
    if run.measured:
        report.grids[1].add("latency, measured (sum of weighted layers)", seconds(measured), "")
    report.grids[1].notes.append(context["prediction"])
    if any(lat.quality_cell(one.timing) for one in per_layer):
        report.grids[0].notes.append(lat.UNRELIABLE)
    report.data["timing"] = lat.section(per_layer, context)
    lat.attach(report.records, by_name)
    return report

"""Records -> Report: the rows, columns and notes each command shows. No printing, no torch."""

from __future__ import annotations

from typing import Any

from dscalc.records import LayerCost, SeparableComparison
from dscalc.render import Column, Grid, Report
from dscalc.units import exact, in_out, ratio, shape, si, times

CONVENTIONS = {
    "macs": "multiply-accumulates; bias additions excluded",
    "flops": "2 x macs",
    "params": "learnable parameters: weights + bias (+ norm affine)",
    "weights": "conv/linear weights only",
    "bytes": "input + output + parameters, each read or written once, at the row's dtype",
    "intensity": "flops / bytes",
}

_SUP = {1: "", 2: "²", 3: "³"}


def _label(layer: LayerCost) -> str:
    geo = layer.geometry()
    return f"{layer.kind} {geo}" if geo else layer.kind


def _power(values: tuple[int, ...]) -> str:
    """56² for (56, 56), 28·56 for (28, 56), 7 for (7,)."""
    if len(set(values)) == 1:
        return f"{values[0]}{_SUP[len(values)]}"
    return "·".join(map(str, values))


def layer_formula(layer: LayerCost) -> tuple[str, str]:
    """The closed form of one layer's MACs, symbolic and with its numbers."""
    d = len(layer.kernel)
    sup, batch = _SUP.get(d, ""), layer.input_shape[0]
    b_sym, b_num = ("B·", f"{batch}·") if batch > 1 else ("", "")
    if layer.kind == "linear":
        cin, cout = layer.input_shape[1], layer.output_shape[1]
        return f"{b_sym}M·N", f"{b_num}{cin}·{cout}"
    cin, cout, g = layer.input_shape[1], layer.output_shape[1], layer.groups
    k = _power(layer.kernel)
    if layer.kind == "transposed":
        inp = _power(layer.input_shape[2:])
        m = f"(N/{g})" if g > 1 else "N"
        mn = f"({cout}/{g})" if g > 1 else f"{cout}"
        return f"{b_sym}M·{m}·D_K{sup}·D_in{sup}", f"{b_num}{cin}·{mn}·{k}·{inp}"
    out = _power(layer.output_shape[2:])
    if layer.kind == "pointwise":
        return f"{b_sym}M·N·D_F{sup}", f"{b_num}{cin}·{cout}·{out}"
    if layer.kind == "depthwise":
        dm = cout // cin
        return (f"{b_sym}D_K{sup}·M·D_F{sup}" + ("·dm" if dm > 1 else ""),
                f"{b_num}{k}·{cin}·{out}" + (f"·{dm}" if dm > 1 else ""))
    if layer.kind == "grouped":
        return f"{b_sym}D_K{sup}·(M/g)·N·D_F{sup}", f"{b_num}{k}·({cin}/{g})·{cout}·{out}"
    return f"{b_sym}D_K{sup}·M·N·D_F{sup}", f"{b_num}{k}·{cin}·{cout}·{out}"


def _row(layer: LayerCost, name: str | None = None) -> list[str]:
    return [
        name or _label(layer), shape(layer.output_shape), exact(layer.params), exact(layer.macs),
        si(layer.flops), f"{layer.intensity:.1f}",
    ]


def layer_report(layer: LayerCost, comparison: SeparableComparison | None, assumptions: list[str]) -> Report:
    """The `dscalc layer` report: one layer and, where one exists, its depthwise-separable counterpart."""
    data: dict[str, Any] = {"command": "layer", "conventions": CONVENTIONS, "assumptions": assumptions}
    rows = [layer] if comparison is None else [layer, comparison.depthwise, comparison.pointwise]
    data["rows"] = [r.to_dict() for r in rows]
    records = [r.to_dict() for r in rows]
    if comparison is not None:
        data.update(comparison.to_dict())
        sep = comparison.to_dict()["separable"]
        records.append({"name": "separable", "kind": "separable", **sep})

    title = f"{_label(layer)}: {shape(layer.input_shape)} -> {shape(layer.output_shape)}"
    grid = Grid(
        title=title,
        columns=[Column("layer", "left"), Column("output", "left"), Column("params"), Column("MACs"),
                 Column("FLOPs"), Column("FLOP/B")],
        caption="; ".join(assumptions),
    )
    sym, num = layer_formula(layer)
    if comparison is None:
        grid.add(*_row(layer))
        grid.notes.append(f"{layer.kind} MACs = {sym} = {num} = {exact(layer.macs)}")
    else:
        dw, pw = comparison.depthwise, comparison.pointwise
        grid.add(*_row(layer), end_section=True)
        grid.add(*_row(dw))
        grid.add(*_row(pw), end_section=True)
        grid.add("separable = dw + pw", "", exact(comparison.params), exact(comparison.macs),
                 si(comparison.flops), f"{comparison.flops / comparison.bytes:.1f}")
        grid.add(f"separable/{layer.kind}", "", ratio(comparison.params_ratio), ratio(comparison.macs_ratio), "", "")
        grid.add("fewer by", "", times(comparison.params_ratio), times(comparison.macs_ratio), "", "")
        dw_sym, dw_num = layer_formula(dw)
        pw_sym, pw_num = layer_formula(pw)
        n, kernel = layer.output_shape[1], layer.kernel
        dm, g = dw.output_shape[1] // dw.input_shape[1], layer.groups
        scale_sym = ("dm·" if dm > 1 else "") + ("g·" if g > 1 else "")
        scale_num = (f"{dm}·" if dm > 1 else "") + (f"{g}·" if g > 1 else "")
        d = len(kernel)
        closed_sym, closed_num = f"1/N + 1/D_K{_SUP[d]}", f"1/{n} + 1/{_power(kernel)}"
        if scale_sym:
            closed_sym, closed_num = f"{scale_sym}({closed_sym})", f"{scale_num}({closed_num})"
        grid.notes += [
            f"{layer.kind:<9} {sym} = {num} = {exact(layer.macs)} MACs",
            f"separable {dw_sym} + {pw_sym}",
            f"          = {dw_num} + {pw_num}",
            f"          = {exact(dw.macs)} + {exact(pw.macs)} = {exact(comparison.macs)} MACs",
            f"ratio     {closed_sym} = {closed_num} = {ratio(comparison.closed_form)} (closed form)",
            f"          exact counts: {exact(comparison.macs)} / {exact(layer.macs)} = {ratio(comparison.macs_ratio)}",
        ]
    return Report(data=data, records=records, grids=[grid])


# --------------------------------------------------------------------------------------------- network

#: the paper's Table 2 labels, in its order; everything else is "other"
KIND_LABELS = {
    "pointwise": "Conv 1x1", "depthwise": "Conv DW", "standard": "Conv", "grouped": "Conv grouped",
    "transposed": "Conv transposed", "linear": "Fully connected",
}
COMPUTE_KINDS = set(KIND_LABELS) | {"maxpool", "avgpool", "gap", "add", "concat"}
_SHORT = {"pointwise": "pw", "depthwise": "dw", "standard": "conv", "grouped": "gconv", "transposed": "tconv",
          "linear": "fc"}


def totals(rows: list[LayerCost]) -> dict[str, int]:
    """Sums over rows: params, weights, bias, norm, buffers, macs, flops, bytes."""
    keys = ("params", "weights", "bias", "norm", "buffers", "macs", "flops", "bytes")
    return {k: sum(getattr(r, k) for r in rows) for k in keys}


def by_kind(rows: list[LayerCost]) -> dict[str, dict[str, int]]:
    """Per kind (pointwise, depthwise, standard, ..., other): params, weights, macs."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        kind = r.kind if r.kind in KIND_LABELS else "other"
        slot = out.setdefault(kind, {"params": 0, "weights": 0, "macs": 0})
        slot["params"] += r.params
        slot["weights"] += r.weights
        slot["macs"] += r.macs
    order = [*KIND_LABELS, "other"]
    return {k: out[k] for k in order if k in out}


def builtins_report(specs: list[Any]) -> Report:
    """`dscalc network --list`: each built-in network, one line."""
    grid = Grid(title="built-in networks", columns=[Column("name", "left"), Column("input", "left"),
                                                     Column("description", "left", wrap=True)],
                caption="dscalc network NAME [--alpha A] [--resolution R] [--as separable|standard]")
    records = []
    for spec in specs:
        grid.add(spec.name, shape(spec.input), spec.description)
        records.append({"name": spec.name, "input": list(spec.input), "description": spec.description})
    return Report(data={"command": "network", "builtins": records}, records=records, grids=[grid])


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def network_report(rows: list[LayerCost], meta: dict[str, Any], all_layers: bool = False,
                   latency: dict[str, Any] | None = None) -> Report:
    """The `dscalc network` report: per-layer table, totals, and the paper's Table 2 breakdown by kind."""
    from dscalc.render import bar

    tot = totals(rows)
    kinds = by_kind(rows)
    data: dict[str, Any] = {"command": "network", **meta, "conventions": CONVENTIONS,
                            "rows": [r.to_dict() for r in rows], "totals": tot, "by_kind": kinds}
    records = [r.to_dict() for r in rows] + [{"name": "total", "kind": "total", **tot}]

    grid = Grid(
        title=f"{meta['network']}: {shape(rows[0].input_shape)} -> {shape(rows[-1].output_shape)}",
        columns=[Column("layer", "left"), Column("type", "left"), Column("input -> output", "left"), Column("params"),
                 Column("MACs"), Column("share of MACs", "left")]
        + ([Column("predicted"), Column("measured")] if latency is not None else []),
        caption=(f"alpha {meta['alpha']}, resolution {meta['resolution']}"
                 + (f", every conv as {meta['as']}" if meta.get("as") else "")
                 + ("" if all_layers else "; BN/activation/dropout rows: --all-layers or --format json")),
    )
    for r in rows:
        if not all_layers and r.kind not in COMPUTE_KINDS:
            continue
        geo = r.geometry()
        kind = _SHORT.get(r.kind, r.kind)
        share = r.macs / tot["macs"] if tot["macs"] else 0.0
        cells = [r.name, f"{kind} {geo}".strip(), in_out(r.input_shape, r.output_shape), exact(r.params),
                 exact(r.macs),
                 f"{bar(share, 8):<8} {100 * share:4.1f}%" if r.macs else ""]
        if latency is not None:
            lat = latency.get(r.name)
            cells += _latency_cells(lat)
        grid.add(*cells)

    summary = Grid(title="totals", columns=[Column("", "left"), Column("count"), Column("")])
    summary.add("MACs (conv + linear, bias excluded)", exact(tot["macs"]), si(tot["macs"]))
    summary.add("FLOPs (2 x MACs)", exact(tot["flops"]), si(tot["flops"]))
    summary.add("params (learnable: weights + bias + BN affine)", exact(tot["params"]), si(tot["params"]))
    summary.add("weights (conv/linear only: the paper's count)", exact(tot["weights"]), si(tot["weights"]))
    summary.add("buffers (BN running mean/var; Keras adds them)", exact(tot["buffers"]), si(tot["buffers"]))
    summary.add("params + buffers (Keras 'Total params')", exact(tot["params"] + tot["buffers"]),
                si(tot["params"] + tot["buffers"]))

    table2 = Grid(title="by kind (MobileNets paper, Table 2)",
                  columns=[Column("type", "left"), Column("MACs"), Column("share"), Column("weights"),
                           Column("share"), Column("params")])
    for kind, v in kinds.items():
        table2.add(KIND_LABELS.get(kind, "other (BN, pool, ...)"), exact(v["macs"]), _share(v["macs"], tot["macs"]),
                   exact(v["weights"]), _share(v["weights"], tot["weights"]), exact(v["params"]))
    if latency is not None:
        from dscalc.compare import latency_sums
        from dscalc.units import seconds

        predicted, measured = latency_sums(list(latency.values()))
        summary.add("latency, predicted (sum of conv/linear layers)", seconds(predicted), "")
        summary.add("latency, measured (sum of conv/linear layers)", seconds(measured), "")
        data["timing"] = {"layers": [v.to_dict() for v in latency.values()], "predicted_s": predicted,
                          "measured_s": measured}
    return Report(data=data, records=records, grids=[grid, summary, table2])


def _latency_cells(lat: Any) -> list[str]:
    from dscalc.units import seconds

    if lat is None:
        return ["", ""]
    t = lat.timing
    return [seconds(lat.predicted.seconds) if lat.predicted else "-", (t.error or seconds(t.median)) if t else "-"]


def profile_latency_grid(per_layer: list[Any], end_to_end: Any, settings: Any) -> Grid:
    """Per-convolution and end-to-end latency of a profiled model."""
    from dscalc.timing import describe
    from dscalc.units import seconds, speedup

    context = describe(settings)
    grid = Grid(title=f"measured on {context['device']}", columns=[
                Column("layer", "left"), Column("MACs"), Column("predicted"), Column("bound", "left"),
                Column("measured"), Column("IQR"), Column("as separable"), Column("speedup (MACs)")],
                caption=f"{settings.dtype}, {context['threads']} threads; each convolution run on its own; "
                        "as separable: its depthwise + pointwise pair, measured")
    for lat in per_layer:
        t = lat.timing
        pair = lat.pair
        sep = (pair.pair.timing.error or seconds(pair.pair.timing.median)) if pair else ""
        gain = f"{speedup(pair.measured_speedup)} ({speedup(pair.mac_speedup)})" if pair else ""
        grid.add(lat.name, exact(lat.macs), seconds(lat.predicted.seconds), lat.predicted.bound,
                 t.error or seconds(t.median), "" if t.error else seconds(t.iqr), sep, gain)
    from dscalc.compare import latency_sums

    total_pred, total_measured = latency_sums(per_layer)
    grid.add("sum of the convolutions", "", seconds(total_pred), "", seconds(total_measured), "", "", "",
             end_section=True)
    grid.add("end to end (whole forward)", "", "", "", end_to_end.error or seconds(end_to_end.median),
             "" if end_to_end.error else seconds(end_to_end.iqr), "", "")
    return grid


# --------------------------------------------------------------------------------------------- profile

def profile_report(result: Any, meta: dict[str, Any]) -> Report:
    """The `dscalc profile` report: per-module rows, totals by op kind, uncounted ops, the fvcore check."""
    from dscalc.profile import explain, fvcore_extra
    from dscalc.render import bar

    tot = result.totals
    data: dict[str, Any] = {"command": "profile", **meta, "conventions": CONVENTIONS,
                            "inputs": [list(s) for s in result.inputs], "outputs": [list(s) for s in result.outputs],
                            "rows": [r.to_dict() for r in result.rows], "totals": tot,
                            "by_op_kind": result.by_op_kind, "uncounted": result.uncounted}
    if result.fvcore is not None:
        data["fvcore"] = result.fvcore
    records = [r.to_dict() for r in result.rows] + [{"name": "total", "kind": "total", **tot}]
    checked = result.fvcore is not None and "total" in result.fvcore
    columns = [Column("module", "left"), Column("type", "left"), Column("input -> output", "left"), Column("params"),
               Column("MACs"), Column("share", "left"), Column("as separable")]
    if checked:
        columns.append(Column("fvcore", "left"))
    grid = Grid(title=f"{meta['model']}: " + ", ".join(shape(s) for s in result.inputs), columns=columns,
                caption="MACs: conv + linear + matmul, bias excluded (torchvision's _ops convention)")
    for r in result.rows:
        share = r.macs / tot["macs"] if tot["macs"] else 0.0
        cells = [r.name, f"{r.type} {r.geometry}".strip(), in_out(r.input_shape, r.output_shape),
                 exact(r.params), exact(r.macs), f"{bar(share, 6):<6} {100 * share:4.1f}%" if r.macs else "",
                 exact(r.separable["macs"]) if r.separable else ""]
        if checked:
            if r.fvcore is None:
                cells.append("")
            elif r.fvcore == r.macs:
                cells.append("✓")
            else:
                cells.append(f"✗ {r.fvcore - r.macs:+,} ({explain(r.fvcore_ops)})")
        grid.add(*cells)

    summary = Grid(title="totals", columns=[Column("", "left"), Column("count"), Column("")])
    summary.add("MACs (conv + linear + matmul)", exact(tot["macs"]), si(tot["macs"]))
    summary.add("FLOPs (2 x MACs)", exact(tot["flops"]), si(tot["flops"]))
    summary.add("params (sum of p.numel())", exact(tot["params"]), si(tot["params"]))
    if "separable_macs" in tot:
        summary.add("MACs if every k>1 standard conv were separable", exact(tot["separable_macs"]),
                    si(tot["separable_macs"]))
    if checked:
        summary.add("fvcore total (its 'flops' are MACs)", exact(result.fvcore["total"]), si(result.fvcore["total"]))
    elif result.fvcore is not None:
        summary.notes.append(f"fvcore check skipped: {result.fvcore['skipped']}")

    kinds = Grid(title="by op kind", columns=[Column("kind", "left"), Column("ops"), Column("MACs"),
                                                  Column("output elements")])
    for kind, v in result.by_op_kind.items():
        kinds.add(kind, exact(v["ops"]), exact(v["macs"]) if v["macs"] else "-", exact(v["elements"]))
    if result.uncounted:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(result.uncounted.items()))
        kinds.notes.append(f"not counted (no MACs): {listed}")
    if checked:
        extra = fvcore_extra(result.fvcore["by_operator"])
        if extra:
            kinds.notes.append("fvcore also counts: " + ", ".join(f"{k} {exact(v)}" for k, v in sorted(extra.items())))
    return Report(data=data, records=records, grids=[grid, summary, kinds])


# ------------------------------------------------------------------------------------ measured latency

def latency_grid(rows: list[Any], pair: Any, context: dict[str, Any]) -> Grid:
    """Theory, roofline and measurement of a layer (and, with `pair`, its separable pair and the verdict)."""
    from dscalc.units import seconds, speedup

    measured_any = any(r.timing is not None for r in rows)
    grid = Grid(title=f"latency on {context['device']}",
                columns=[Column("kernel", "left"), Column("MACs"), Column("predicted"), Column("bound", "left"),
                         Column("measured"), Column("IQR"), Column("runs")],
                caption=(f"median of repeated runs (torch.utils.benchmark), {context['dtype']}"
                         + (", channels-last" if context.get("channels_last") else "")
                         + f", {context['threads']} threads, TF32 {'on' if context['tf32'] else 'off'}")
                if measured_any else "predicted from the device's ceilings; --time measures")
    for i, r in enumerate(rows):
        t = r.timing
        measured = (t.error or seconds(t.median)) if t is not None else "-"
        grid.add(r.name, exact(r.macs), seconds(r.predicted.seconds) if r.predicted else "-",
                 r.predicted.bound if r.predicted else "", measured,
                 seconds(t.iqr) if t is not None and not t.error else "", str(t.runs) if t is not None else "",
                 end_section=pair is not None and i in (0, 2))
    if pair is not None:
        gain = pair.measured_speedup
        verdict = "" if gain is None else (" - separable wins" if gain > 1 else " - separable LOSES")
        grid.notes.append(f"separable speedup: MACs {speedup(pair.mac_speedup)}, roofline "
                          f"{speedup(pair.predicted_speedup)}, measured {speedup(gain)}{verdict}")
    return grid

"""Records -> Report: the rows, columns and notes each command shows. No printing, no torch."""

from __future__ import annotations

from typing import Any

from dscalc.records import LayerCost, SeparableComparison
from dscalc.render import Column, Grid, Report
from dscalc.units import exact, ratio, shape, si, times

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
    kk, sp, batch = _SUP.get(d, ""), _SUP.get(d, ""), layer.input_shape[0]
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
        return f"{b_sym}M·{m}·D_K{kk}·D_in{sp}", f"{b_num}{cin}·{mn}·{k}·{inp}"
    out = _power(layer.output_shape[2:])
    if layer.kind == "pointwise":
        return f"{b_sym}M·N·D_F{sp}", f"{b_num}{cin}·{cout}·{out}"
    if layer.kind == "depthwise":
        dm = cout // cin
        return (f"{b_sym}D_K{kk}·M·D_F{sp}" + ("·dm" if dm > 1 else ""),
                f"{b_num}{k}·{cin}·{out}" + (f"·{dm}" if dm > 1 else ""))
    if layer.kind == "grouped":
        return f"{b_sym}D_K{kk}·(M/g)·N·D_F{sp}", f"{b_num}{k}·({cin}/{g})·{cout}·{out}"
    return f"{b_sym}D_K{kk}·M·N·D_F{sp}", f"{b_num}{k}·{cin}·{cout}·{out}"


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

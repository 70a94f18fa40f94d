"""`dscalc explain`: one convolution's arithmetic on small numbers - the input, the kernels and the output as small
matrices (Keras layout), chosen output cells written out as their sums of products with per-channel partial sums,
what the MAC count counts, and the check against torch.

`draw(study)` returns a Report like every command's drawing; the study (`dscalc.study.explain`) holds the exact
example (`dscalc.cost.explain`) and the check against torch (`dscalc.trace.explain_check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from dscalc.cost.explain import Cell, Example, Stage, Tensor, Term
from dscalc.cost.kinds import KINDS, formula, label
from dscalc.report.fmt import exact, ratio, times
from dscalc.report.model import CONVENTIONS, Column, Grid, Report, name

if TYPE_CHECKING:
    from dscalc.study.explain import ExplainStudy

#: what each stage's tensors are called: (input, kernel, output)
_NAMES = {"depthwise": ("in", "DW", "dw"), "pointwise": ("dw", "PW", "out")}


def _names(ex: Example, stage: Stage) -> tuple[str, str, str]:
    return _NAMES[stage.name] if ex.kind == "separable" else ("in", "K", "out")


# ------------------------------------------------------------------------------------------ exact decimals

def _places(value: Fraction) -> int:
    """The decimal places that write `value` exactly (its denominator divides a power of ten)."""
    places, scaled = 0, value
    while scaled.denominator != 1:
        scaled *= 10
        places += 1
        if places > 30:
            raise ValueError(f"{value} has no exact decimal")
    return places


def places(values: Sequence[Fraction], minimum: int = 0) -> int:
    return max([minimum, *(_places(v) for v in values)])


def dec(value: Fraction, digits: int) -> str:
    """An exact decimal with `digits` places (598.5, 114.0, 3): no float noise, ever."""
    scaled = value * 10**digits
    assert scaled.denominator == 1, (value, digits)
    n = scaled.numerator
    sign, n = ("-" if n < 0 else ""), abs(n)
    if digits == 0:
        return f"{sign}{n}"
    whole, frac = divmod(n, 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def _factor(value: Fraction, digits: int) -> str:
    text = dec(value, digits)
    return f"({text})" if value < 0 else text


# ---------------------------------------------------------------------------------------------- matrices

def _matrix_grid(caption: str, tensor: Tensor, blocks: list[tuple[str, tuple[int, ...]]], header: str,
                 minimum: int, kernel: bool = False) -> Grid:
    """A tensor whose two first axes are (rows, columns) as a stack of small matrices, one per block: `blocks`
    names each matrix and gives its trailing index (a channel, or a kernel's (in, out) pair). The description goes
    in the caption (a title would wrap at the width of a narrow matrix)."""
    rows_n, cols_n = tensor.shape[0], tensor.shape[1]
    digits = places(tensor.values, minimum)
    row, col = ("ky", "kx") if kernel else ("y", "x")
    grid = Grid("", [name(header)] + [Column(f"{col}={i}") for i in range(cols_n)], caption=caption)
    for b, (block, tail) in enumerate(blocks):
        for r in range(rows_n):
            head = f"{block} {row}={r}" if r == 0 else f"{' ' * len(block)} {row}={r}"
            grid.add(head, *(dec(tensor[(r, c, *tail)], digits) for c in range(cols_n)),
                     end_section=r == rows_n - 1 and b < len(blocks) - 1)
    return grid


def _channels(tensor: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"c={c}", (c,)) for c in range(tensor.shape[2])]


def _kernel_blocks(stage: Stage) -> list[tuple[str, tuple[int, ...]]]:
    _, _, a, b = stage.kernel.shape
    blocks: list[tuple[str, tuple[int, ...]]] = []
    for i in range(a):
        for j in range(b):
            if stage.name == "transposed":  # (kh, kw, out, in)
                text = f"in {j} -> out {i}"
            elif stage.name == "depthwise":  # (kh, kw, in, dm): output channel i·dm + j
                text = f"in {i} -> out {i * b + j}"
            elif stage.layer.groups > 1:  # (kh, kw, in/g, out)
                per_out = b // stage.layer.groups
                text = f"in {(j // per_out) * a + i} -> out {j}"
            else:
                text = f"in {i} -> out {j}"
            blocks.append((text, (i, j)))
    if stage.name != "transposed":
        blocks.sort(key=lambda blk: (blk[1][1], blk[1][0]) if stage.name != "depthwise" else blk[1])
    return blocks


def _fill_text(ex: Example, start: int, n: int, integers: bool) -> str:
    if ex.values == "random":
        return f"random values (seed {ex.seed if ex.seed is not None else 0})"
    if integers:
        return "filled " + (", ".join(str(start + i) for i in range(n)) if n <= 3
                            else f"{start}, {start + 1}, ..., {start + n - 1}") + " in that order"
    return "filled 0.1, 0.2, 0.3, ... in that order"


def _label(stage: Stage) -> str:
    """`depthwise 3x3/s2`: the stage's own kind (the engine calls a one-channel depthwise conv standard)."""
    geo = stage.layer.geometry()
    return f"{stage.name} {geo}" if geo else stage.name


def _formula(stage: Stage) -> tuple[str, str]:
    entry = KINDS[stage.name].formula
    return entry(stage.layer) if entry is not None else formula(stage.layer)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


# -------------------------------------------------------------------------------------------------- cells

def _term_grid(ex: Example, stage: Stage, cell: Cell) -> Grid:
    x_name, k_name, y_name = _names(ex, stage)
    terms = cell.terms
    v_digits = places([t.value for t in terms], 1)
    w_digits = places([t.weight for t in terms])
    p_digits = places([t.product for t in terms] + [cell.value], 1)
    # (no letters inside the brackets: rich would read [y=0] as markup)
    title = (f"{y_name}[{cell.y},{cell.x},{cell.channel}] (y, x, c) = {dec(cell.value, p_digits)}: the sum of "
             f"{_plural(len(terms), 'product')}")
    grid = Grid(title, [name(f"input {x_name}[y,x,c]"), Column("value"), Column(f"kernel {k_name}", "left", "name"),
                        Column("weight"), Column("product")])
    partials = cell.partials()
    for channel, partial in partials:
        for t in (t for t in terms if t.channel == channel):
            grid.add(f"{x_name}[{','.join(map(str, t.at))}]" + (" pad" if t.padded else ""), dec(t.value, v_digits),
                     f"{k_name}[{','.join(map(str, t.kernel_at))}]", dec(t.weight, w_digits),
                     dec(t.product, p_digits))
        if len(partials) > 1:
            grid.add(f"channel {channel} sum", "", "", "", dec(partial, p_digits), end_section=True)
    sum_text = " + ".join(f"{_factor(t.value, v_digits)}·{_factor(t.weight, w_digits)}" for t in terms)
    grid.notes.append(f"{y_name}[{cell.y},{cell.x},{cell.channel}] = {sum_text}")
    if len(partials) > 1:
        grid.notes.append("= " + " + ".join(f"{_factor(p, p_digits)} (input channel {c})" for c, p in partials)
                          + f" = {dec(cell.value, p_digits)}")
    else:
        grid.notes.append(f"= {dec(cell.value, p_digits)}")
    if not terms:
        grid.notes.append("(no input value lands on this cell: it is 0)")
    return grid


def _term_dict(t: Term) -> dict[str, Any]:
    return {"input": float(t.value), "at": list(t.at), "padding": t.padded, "weight": float(t.weight),
            "kernel_at": list(t.kernel_at), "product": float(t.product)}


def _cell_dict(stage: Stage, cell: Cell) -> dict[str, Any]:
    return {"stage": stage.name, "channel": cell.channel, "y": cell.y, "x": cell.x, "value": float(cell.value),
            "products": len(cell.terms), "terms": [_term_dict(t) for t in cell.terms],
            "partials": [{"channel": c, "sum": float(p)} for c, p in cell.partials()]}


# ------------------------------------------------------------------------------------------------- counts

def _counts_grid(ex: Example) -> Grid:
    grid = Grid("what the MAC count counts: every product above",
                [name("stage"), Column("products per cell"), Column("output cells"), Column("products"),
                 Column("engine MACs")])
    notes = []
    for stage in ex.stages:
        lo, hi = stage.per_cell
        cells = len(stage.cells)
        per = str(lo) if lo == hi else f"{lo} to {hi}"
        grid.add(_label(stage), per, str(cells), exact(stage.products), exact(stage.layer.macs))
        sym, num = _formula(stage)
        if stage.name == "transposed":
            _, cin, h, w = stage.layer.input_shape
            cout = stage.layer.output_shape[1]
            kh, kw = stage.layer.kernel
            notes.append(f"{stage.name} MACs = {sym} = {num} = {exact(stage.layer.macs)}: each of the {h * w * cin} "
                         f"input values meets {cout}·{kh * kw} kernel values, and each product lands on one output "
                         f"cell ({lo} to {hi} per cell)")
            if stage.outside:
                notes.append(f"  {exact(stage.outside)} of them land outside the {h}x{w} -> "
                             f"{'x'.join(map(str, stage.layer.output_shape[2:]))} output (cropped by padding): "
                             f"{exact(stage.products)} + {exact(stage.outside)} = {exact(stage.layer.macs)}")
        else:
            padded = sum(1 for c in stage.cells.values() for t in c.terms if t.padded)
            notes.append(f"{stage.name} MACs = {sym} = {num} = {exact(stage.layer.macs)} = "
                         f"{_plural(lo, 'product')} per cell x {_plural(cells, 'cell')}"
                         + (f" ({exact(padded)} of them multiply padding zeros)" if padded else ""))
        if stage.products + stage.outside != stage.layer.macs or (stage.name != "transposed" and stage.outside):
            raise AssertionError(f"explain counted {stage.products} products, the engine {stage.layer.macs} MACs")
    if ex.standard is not None:
        std = ex.standard
        std_cells = std.output_shape[1] * std.output_shape[2] * std.output_shape[3]
        std_per = std.macs // std_cells
        grid.sections.add(len(grid.rows) - 1)
        grid.add("separable = dw + pw", "", "", exact(ex.macs), exact(ex.macs), end_section=True)
        grid.add(f"{label(std)} instead", str(std_per), str(std_cells), exact(std.macs), exact(std.macs))
        saving = Fraction(ex.macs, std.macs)
        grid.add("separable/standard", "", "", "", ratio(saving))
        dw, pw = ex.stages
        notes.append(f"a standard conv sums {_plural(std_per, 'product')} per output cell; separable sums "
                     f"{dw.per_cell[0]} per depthwise cell and {pw.per_cell[0]} per pointwise cell: "
                     f"{exact(dw.layer.macs)} + {exact(pw.layer.macs)} = {exact(ex.macs)} instead of "
                     f"{exact(std.macs)} MACs, {times(saving)} fewer")
    grid.notes += notes
    return grid


# -------------------------------------------------------------------------------------------------- build

def _check_line(check: Any, ex: Example) -> str:
    ops = " then ".join(dict.fromkeys(check.ops)) if check.ops else ""
    if check.ran:
        return (f"torch {check.torch_version} {ops} agrees: max |diff| = {check.max_diff:.1g} (float64, all "
                f"{sum(len(s.cells) for s in ex.stages)} output values)")
    op = "F.conv_transpose2d" if ex.kind == "transposed" else "F.conv2d"
    return (f"torch is not installed: the sums above are exact Python fractions alone (pip install 'dscalc[torch]' "
            f"to check them against {op})")


def draw(study: ExplainStudy) -> Report:
    """The worked example of one layer: its matrices, the chosen output cells' sums (of the last stage; a separable
    conv's depthwise cells that feed them too), the count tie-in and the check against torch (when installed)."""
    ex, spec, check, pointwise_start = study.example, study.spec, study.check, study.pointwise_start
    chosen = [ex.cell(*at) for at in study.cells]

    grids: list[Grid] = []
    x = ex.input
    grids.append(_matrix_grid(f"input in {_shape(x.shape)} (H, W, C), {_fill_text(ex, 1, 0, False)}; "
                              f"{_label(ex.stages[0]) if ex.kind != 'separable' else ex.kind}, padding "
                              f"{spec.padding_text}, no bias, Keras layout", x, _channels(x), "in", 1))
    for stage in ex.stages:
        _, k_name, y_name = _names(ex, stage)
        start = pointwise_start if stage.name == "pointwise" and pointwise_start is not None else 1
        n = len(stage.kernel.values)
        grids.append(_matrix_grid(f"{stage.name} kernel {k_name} {_shape(stage.kernel.shape)} {stage.kernel_layout}, "
                                  f"{_fill_text(ex, start, n, True)}", stage.kernel, _kernel_blocks(stage), k_name, 0,
                                  kernel=True))
        out = stage.output
        grids.append(_matrix_grid(f"{stage.name} output {y_name} {_shape(out.shape)} (H, W, C)", out,
                                  _channels(out), y_name, 1))
    shown: list[tuple[Stage, Cell]] = []
    last = ex.stages[-1]
    for cell in chosen:
        if ex.kind == "separable":
            dw = ex.stages[0]
            for t in cell.terms:
                feeder = dw.cells[(t.at[2], t.at[0], t.at[1])]
                if (dw, feeder) not in shown:
                    shown.append((dw, feeder))
        shown.append((last, cell))
    grids += [_term_grid(ex, stage, cell) for stage, cell in shown]
    counts = _counts_grid(ex)
    counts.notes.append(_check_line(check, ex))
    grids.append(counts)

    data: dict[str, Any] = {
        "command": "explain", "kind": ex.kind, "values": ex.values, "seed": ex.seed, "layout": "keras",
        "conventions": CONVENTIONS,
        "assumptions": [f"padding {spec.padding_text}, batch 1, no bias, exact arithmetic (fractions)"],
        "rows": [s.layer.to_dict() for s in ex.stages],
        "input": {"shape": list(x.shape), "axes": "(H, W, C)", "values": x.nested()},
        "stages": [{"name": s.name, "kernel": {"shape": list(s.kernel.shape), "axes": s.kernel_layout,
                                               "values": s.kernel.nested()},
                    "output": {"shape": list(s.output.shape), "axes": "(H, W, C)", "values": s.output.nested()},
                    "products_per_cell": list(s.per_cell), "output_cells": len(s.cells), "products": s.products,
                    "outside": s.outside, "macs": s.layer.macs} for s in ex.stages],
        "output": {"shape": list(ex.output.shape), "axes": "(H, W, C)", "values": ex.output.nested()},
        "cells": [_cell_dict(s, c) for s, c in shown],
        "macs": ex.macs,
        "check": check.to_dict(),
    }
    if ex.standard is not None:
        data["standard"] = ex.standard.to_dict()
    records: list[dict[str, Any]] = []
    tensors = [("in", "input", x)] + [(t, s.name, m) for s in ex.stages
                                     for t, m in ((_names(ex, s)[1], s.kernel), (_names(ex, s)[2], s.output))]
    for tensor_name, stage_name, tensor in tensors:
        for i, index in enumerate(_indices(tensor.shape)):
            records.append({"tensor": tensor_name, "stage": stage_name, "index": ",".join(map(str, index)),
                            "value": float(tensor.values[i])})
    return Report("explain", data, records, grids)


def _indices(shape: Sequence[int]) -> list[tuple[int, ...]]:
    from itertools import product

    return list(product(*(range(n) for n in shape)))

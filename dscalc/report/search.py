"""`dscalc search`: the ranked candidates of a design space - exact costs, predicted (and measured) latency, score,
the Pareto front marked - as a table, JSON, CSV or Markdown; the latency lookup table; the plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dscalc.errors import BadInput
from dscalc.measure.search import Result, SearchResult
from dscalc.report import latency as lat
from dscalc.report.fmt import binary, exact, seconds
from dscalc.report.model import CONVENTIONS, Column, Grid, Report, name
from dscalc.report.plot import pyplot, save

#: the conventions of the search's figures, stated in its JSON
SEARCH_CONVENTIONS = {
    **CONVENTIONS,
    "keras_params": "params + BatchNorm running statistics (Keras' 'Total params', count_params())",
    "activations": "bytes of the largest set of activations alive at once in a forward pass (input included)",
    "training_memory": "peak bytes of a training step: weights, gradients, optimizer state, saved activations",
    "predicted_s": "sum of the per-block predictions (memory-bound blocks where calibrated) x the calibration's "
                   "in-network factor",
}
_HEADERS = {"training_memory": "train mem", "activations": "activations", "weights": "weights"}
#: the rows the table shows by default (JSON and CSV carry all)
TOP = 30


def _row(r: Result) -> dict[str, Any]:
    c = r.candidate
    return {"name": c.id, "kind": "candidate", **r.to_dict()}


def draw(study: Any) -> Report:
    """A SearchStudy (`dscalc.study.search`) drawn: its result, `top` rows on screen."""
    return build(study.result, study.top)


def build(result: SearchResult, top: int = TOP) -> Report:
    """The report of a search: one row per candidate, ranked; the front and the constraints in the last column."""
    rows = [_row(r) for r in result.results]
    space = result.space
    front = result.front
    data: dict[str, Any] = {
        "command": "search", "space": space.name, "source": space.source, "description": space.description,
        "choices": {c.name: list(c.labels) for c in space.choices}, "candidates": space.size,
        "searched": len(result.results), "method": result.method, "axes": list(result.axes),
        "constraints": result.constraints, "score": result.score, "batch": result.batch, "dtype": result.dtype,
        "optimizer": result.optimizer, "device": result.device, "prediction": result.prediction,
        "predictions": result.predictions, "blocks": len(result.blocks), "conventions": SEARCH_CONVENTIONS,
        "front": [r.candidate.id for r in front], "rows": rows, "reorders": list(result.reorders),
        "notes": list(result.notes)}
    predicted = result.prediction is not None
    measured = any(r.measured is not None for r in result.results)
    scored = result.score is not None
    columns = [Column("#"), name("candidate"), Column("params"), Column("Keras total"), Column("MACs")]
    columns += [Column("predicted")] if predicted else []
    columns += [Column("measured")] if measured else []
    columns += [Column("score")] if scored else []
    # the memory columns where an axis or a constraint asks for them (JSON and CSV always carry them)
    extra = [k for k in ("training_memory", "activations", "weights")
             if k in result.axes or k in result.constraints]
    columns += [Column(_HEADERS[k]) for k in extra]
    feasible = sum(r.feasible for r in result.results)
    grid = Grid(
        title=f"search {space.name}: {len(result.results):,} of {space.size:,} candidates "
              f"({result.method.split(':')[0]}), {len(front)} on the front ({', '.join(result.axes)})",
        columns=columns,
        caption=f"candidate = {'/'.join(c.name for c in space.choices)}; params learnable, Keras total + BN "
                f"statistics; MACs bias excluded; at batch {result.batch}, {result.dtype}"
                + (f", train mem one {result.optimizer} step" if "training_memory" in extra else "")
                + "; #* on the front, #x breaks a constraint"
                + (f"; ranked by score = {result.score}" if scored else f"; ranked by {result.axes[0]}"))
    shown = result.results[:top]
    for r in shown:
        c = r.candidate
        mark = "*" if r.front else ("x" if r.violates else " ")
        cells = [f"{r.rank}{mark}", c.id, exact(c.params), exact(c.keras_params), exact(c.macs)]
        cells += [seconds(r.latency_s)] if predicted else []
        cells += [lat.measured_cell(r.measured) if r.measured is not None else ""] if measured else []
        cells += [_score(r.score)] if scored else []
        cells += [binary(int(c.fields()[k])) if k != "weights" else exact(c.weights) for k in extra]
        grid.add(*cells)
    if len(result.results) > len(shown):
        grid.notes.append(f"{len(result.results) - len(shown):,} more candidates: --top N, or --format json/csv")
    if result.constraints:
        grid.notes.append(f"{feasible:,} of {len(result.results):,} candidates meet "
                          + ", ".join(f"--max-{k.split('_')[0]} {_limit(k, v)}" for k, v in
                                      result.constraints.items()))
    if predicted:
        grid.notes.append(f"{result.prediction}; {result.predictions} block predictions for "
                          f"{len(result.results):,} candidates (cached per block signature)")
    if measured:
        if any(lat.quality_cell(r.measured) for r in result.results if r.measured is not None):
            grid.notes.append(lat.UNRELIABLE)
        flips = [x for x in result.reorders if x["verdict"] == "reordered"]
        close = len(result.reorders) - len(flips)
        if not result.reorders:
            grid.notes.append("measured: the front's latency order is the predicted one")
        for x in flips:
            grid.notes.append(f"measured reorders the prediction: {x['measured_faster']} "
                              f"({seconds(x['measured_s'][1])}) ran faster than {x['predicted_faster']} "
                              f"({seconds(x['measured_s'][0])})")
        if close:
            grid.notes.append(f"{close} pair(s) of the front ran in the other order, too close to call "
                              "(their interquartile ranges overlap)")
    grid.notes += result.notes
    return Report("search", data, rows, [grid])


def _score(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _limit(key: str, value: float | int) -> str:
    if key == "latency":
        return seconds(float(value))
    if key == "training_memory":
        return binary(int(value))
    return exact(int(value))


def write_lut(result: SearchResult, path: Path) -> None:
    """--lut FILE: the per-block latency lookup table as JSON."""
    from dscalc.report.render import emit

    if not result.blocks:
        raise BadInput("the lookup table holds predictions: add --predict (or --time)", "lut")
    emit(json.dumps(result.lut(), indent=2, allow_nan=False) + "\n", path)


def plot(result: SearchResult, path: str) -> None:
    """--plot FILE: latency (predicted, or the first axis) against params, the front drawn, candidates labelled."""
    plt = pyplot()
    ykey = "latency" if result.prediction is not None else next((a for a in result.axes if a != "params"), "macs")
    pts = [(r, r.candidate.params, float(y)) for r in result.results if (y := r.axis(ykey)) is not None]
    scale = 1e3 if ykey == "latency" else 1.0
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for feasible in (True, False):
        sel = [(x, y) for r, x, y in pts if r.feasible == feasible and not r.front]
        if sel:
            ax.scatter([x for x, _ in sel], [y * scale for _, y in sel], s=18,
                       color="tab:blue" if feasible else "lightgrey",
                       label="candidate" if feasible else "breaks a constraint")
    front = sorted(((x, y, r) for r, x, y in pts if r.front), key=lambda t: (t[0], t[1]))
    if front:
        ax.plot([x for x, _, _ in front], [y * scale for _, y, _ in front], "o-", color="tab:red",
                label=f"front ({', '.join(result.axes)})")
    labelled = [t for t in pts if t[0].front] if len(pts) > 40 else pts
    at: dict[tuple[float, str], tuple[float, list[str]]] = {}  # candidates on one point share one label
    for r, px, py in labelled:
        at.setdefault((px, f"{py:.6g}"), (py, []))[1].append(r.candidate.id + ("*" if r.front else ""))
    for (lx, _key), (ly, ids) in at.items():
        ax.annotate("\n".join(ids), (lx, ly * scale), fontsize=6, xytext=(3, 2), textcoords="offset points",
                    va="bottom")
    measured = [(x, r.measured.median) for r, x, _ in pts if r.measured is not None and r.measured.median]
    if measured and ykey == "latency":
        ax.scatter([x for x, _ in measured], [m * 1e3 for _, m in measured], marker="x", color="black",
                   label="measured")
    ax.set_xlabel("params (learnable); * on the front")
    ax.set_ylabel("predicted latency (ms)" if ykey == "latency" else ykey)
    ax.set_xscale("log")
    ax.set_title(f"dscalc search {result.space.name}" + (f" on {result.device}" if result.device else ""),
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)

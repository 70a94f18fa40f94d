"""`dscalc sweep`, drawn: the grid of standard-vs-separable configs as a table - MAC, predicted and measured
speedup and the winner, marking where the prediction picked the wrong one (one runtime, or several side by
side) - and its training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.measure.verdict import Verdict
from dscalc.report.fmt import shape, speedup
from dscalc.report.model import Column, Grid, Report, name, text

if TYPE_CHECKING:
    from dscalc.measure.sweep import SweepRow
    from dscalc.study.sweep import SweepStudy


def draw(study: SweepStudy) -> Report:
    if study.runtimes:
        from dscalc.report import runtimes

        return runtimes.sweep_table(list(study.configs), list(study.runtimes), study.context)
    report = table(list(study.configs), study.context)
    if study.training is not None:
        from dscalc.report import training

        training.add_sweep(report, study)
    return report


#: what a sweep's predictions come from, by their model's name (a quick estimate says how to get the calibrated one)
_PREDICTED = {"calibrated": "calibrated model of this device",
              "roofline": "quick estimate from the device's ceilings (not calibrated: run `dscalc device --calibrate` "
                          "once, ~2 min)"}


def table(rows: list[SweepRow], context: dict[str, Any]) -> Report:
    model = rows[0].pair.original.predicted.model if rows and rows[0].pair.original.predicted else "roofline"
    grid = Grid(title=f"separable vs standard on {context['device']}",
                columns=[name("cin->cout"), Column("k"), Column("size"), Column("batch"), Column("dtype", "left"),
                         Column("MACs"), Column("predicted"), Column("measured"), text("winner")],
                caption="speedup = standard time / separable time (> 1: separable is faster); MACs: theory; "
                        "predicted: " + _PREDICTED.get(model, f"{model} model of this device"))
    right = measured_rows = 0
    for r in rows:
        d = r.to_dict()
        verdict = r.pair.verdict
        if d["measured_speedup"] is None:
            winner = d["error"] or "-"
        else:
            measured_rows += 1
            right += bool(d["prediction_right"])
            winner = "too close" if verdict is Verdict.TOO_CLOSE else "separable" if d["separable_wins"] \
                else "standard"
            winner += "" if d["prediction_right"] else " (!)"
            if not d["reliable"]:
                winner += " noisy"
        grid.add(f"{r.cin}->{r.cout}", str(r.k), shape((r.size, r.size)), str(r.batch),
                 r.dtype + (" cl" if r.channels_last else ""), speedup(d["mac_speedup"]),
                 speedup(d["predicted_speedup"]), speedup(d["measured_speedup"]), winner)
    if measured_rows:
        grid.notes.append(f"the {model} prediction picked the winner in {right} of {measured_rows} configs "
                          f"((!) marks a miss); MACs alone always pick separable")
    records = [r.to_dict() for r in rows]
    data = {"command": "sweep", **context, "rows": records,
            "prediction_right": right if measured_rows else None, "measured": measured_rows}
    return Report("sweep", data, records, [grid])

"""`dscalc sweep`: the grid of standard-vs-separable configs as a table - MAC, predicted and measured speedup and
the winner, marking where the prediction picked the wrong one - and as a plot."""

from __future__ import annotations

from typing import Any

from dscalc.cost.parse import values
from dscalc.measure.predictor import predictor_for
from dscalc.measure.settings import Settings, describe
from dscalc.measure.sweep import SweepRow, run
from dscalc.report.fmt import shape, speedup
from dscalc.report.model import Column, Grid, Report, name, text


def table(rows: list[SweepRow], context: dict[str, Any]) -> Report:
    grid = Grid(title=f"separable vs standard on {context['device']}",
                columns=[name("cin->cout"), Column("k"), Column("size"), Column("batch"), Column("dtype", "left"),
                         Column("MACs"), Column("predicted"), Column("measured"), text("winner")],
                caption="speedup = standard time / separable time (> 1: separable is faster); MACs: theory; "
                        "predicted: " + (rows[0].pair.original.predicted.model if rows and
                                         rows[0].pair.original.predicted else "roofline")
                        + " model of this device")
    right = measured_rows = 0
    for r in rows:
        d = r.to_dict()
        if d["measured_speedup"] is None:
            winner = d["error"] or "-"
        else:
            measured_rows += 1
            right += bool(d["prediction_right"])
            winner = {"too close to call": "too close"}.get(d["verdict"], "separable" if d["separable_wins"]
                                                            else "standard")
            winner += "" if d["prediction_right"] else " (!)"
            if not d["reliable"]:
                winner += " noisy"
        grid.add(f"{r.cin}->{r.cout}", str(r.k), shape((r.size, r.size)), str(r.batch),
                 r.dtype + (" cl" if r.channels_last else ""), speedup(d["mac_speedup"]),
                 speedup(d["predicted_speedup"]), speedup(d["measured_speedup"]), winner)
    if measured_rows:
        model = rows[0].pair.original.predicted.model if rows[0].pair.original.predicted else "roofline"
        grid.notes.append(f"the {model} prediction picked the winner in {right} of {measured_rows} configs "
                          f"((!) marks a miss); MACs alone always pick separable")
    records = [r.to_dict() for r in rows]
    data = {"command": "sweep", **context, "rows": records,
            "prediction_right": right if measured_rows else None, "measured": measured_rows}
    return Report("sweep", data, records, [grid])


def build(*, cin: str, cout: str | None, k: str, size: str, batch: str, dtypes: list[str], formats: list[bool],
          settings: Settings, measure: bool, progress: Any = None) -> tuple[Report, list[SweepRow]]:
    """Run the grid (measured, or only predicted) and tabulate it."""
    cins, couts = values(cin, "cin"), values(cout, "cout") if cout else None
    ks, sizes, batches = values(k, "k"), values(size, "size"), values(batch, "batch")
    rows = run(cins, couts, ks, sizes, batches, dtypes, formats, settings if measure else None,
               predictor_for(settings), progress)
    return table(rows, {**describe(settings), "measured": measure}), rows

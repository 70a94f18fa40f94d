"""Latency rows as report parts: the fields every measured row carries (in JSON, CSV and on screen), the latency
grids of `layer --time` / `compare`, and of `network --time` / `profile --time`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.measure.timer import MIN_RUNS, RELIABLE_IQR
from dscalc.measure.verdict import Verdict
from dscalc.report.fmt import exact, seconds, speedup
from dscalc.report.model import Column, Grid, name, text

if TYPE_CHECKING:
    from dscalc.measure.latency import Latency, PairLatency
    from dscalc.measure.predict import Prediction
    from dscalc.measure.timer import Timing

#: what an unreliable timing is, said once under every grid that marks one
UNRELIABLE = (f"noisy: fewer than {MIN_RUNS} timed runs or an IQR above {100 * RELIABLE_IQR:.0f}% of the median - "
              "repeat it, or quiet the machine")


def fields(lat: Latency) -> dict[str, Any]:
    """The timing columns of one row (nested under `timing`, so CSV shows timing.median_s, ...)."""
    out: dict[str, Any] = {}
    if lat.predicted:
        out["predicted_s"], out["bound"] = lat.predicted.seconds, lat.predicted.bound
        out["efficiency"], out["prediction_model"] = lat.predicted.efficiency, lat.predicted.model
        if lat.predicted.interval is not None:
            out["predicted_low_s"], out["predicted_high_s"] = lat.predicted.interval
    if lat.timing is not None:
        out.update(lat.timing.to_dict())
        if lat.predicted and lat.timing.median:
            out["measured_over_predicted"] = lat.timing.median / lat.predicted.seconds
    if lat.pair is not None:
        out["separable"] = {**(lat.pair.pair.timing.to_dict() if lat.pair.pair.timing else {}),
                            "speedup": lat.pair.speedups(), "verdict": lat.pair.verdict_text}
    return out


def attach(records: list[dict[str, Any]], latencies: dict[str, Latency]) -> None:
    """Add the timing fields to the CSV record of each row that was predicted or measured (matched by name)."""
    for record in records:
        lat = latencies.get(record.get("name", ""))
        if lat is not None:
            record["timing"] = fields(lat)


def measured_cell(t: Timing | None) -> str:
    if t is None:
        return "-"
    return t.error or seconds(t.median)


def quality_cell(t: Timing | None) -> str:
    """'' for a reliable timing, 'noisy (IQR 34% of median)' otherwise."""
    if t is None or t.error or t.reliable:
        return ""
    return f"noisy ({t.why_unreliable})"


def verdict_line(pair: PairLatency) -> str:
    gain = pair.measured_speedup
    verdict = pair.verdict
    why = "the paired ratio's IQR spans 1" if pair.ratio is not None else "the IQRs overlap"
    said = "" if verdict is None else (f" - too close to call ({why})" if verdict is Verdict.TOO_CLOSE
                                       else " - separable wins" if verdict is Verdict.SEPARABLE
                                       else " - separable LOSES")
    model = pair.original.predicted.model if pair.original.predicted else "predicted"
    return (f"separable speedup: MACs {speedup(pair.mac_speedup)}, {model} {speedup(pair.predicted_speedup)}"
            f"{predicted_range(pair)}, measured {speedup(gain)}{said}")


def predicted_range(pair: PairLatency) -> str:
    """' (0.90-1.30x, too close to call)': the predicted speedup's interval, where the predictions have one, and
    the predicted verdict when that interval straddles 1."""
    interval = pair.predicted_interval
    if interval is None or not interval[0] < interval[1]:
        return ""
    close = ", too close to call" if pair.predicted_verdict is Verdict.TOO_CLOSE else ""
    return f" ({interval[0]:.2f}-{interval[1]:.2f}x{close})"


def predicted_cell(p: Prediction | None) -> str:
    """'1.2 ms (0.9 ms-1.5 ms)': a predicted time and its interval (where it has one that is not a point)."""
    if p is None:
        return "-"
    if p.low is None or p.high is None or not p.low < p.high:
        return seconds(p.seconds)
    return f"{seconds(p.seconds)} ({seconds(p.low)}-{seconds(p.high)})"


_REASON = {"fixed cost": "fixed-cost bound at this size", "memory": "memory-bound", "launch": "launch-bound"}


def explain(pair: PairLatency) -> str:
    """The answer in one line: how much faster separable is predicted to be here (and was measured), and why the
    MAC ratio promised more - the kernel of the pair that takes most of its time, and what bounds it."""
    predicted, macs = pair.predicted_speedup, pair.mac_speedup
    dw, pw = pair.depthwise.predicted, pair.pointwise.predicted
    if predicted is None or dw is None or pw is None:
        return ""
    faster = f"{predicted:.1f}x faster" if predicted >= 1 else f"{1 / predicted:.1f}x slower"
    measured = pair.measured_speedup
    said = f"separable is predicted {faster} here" + (f" (measured {speedup(measured)})" if measured else "")
    if pair.predicted_verdict is Verdict.TOO_CLOSE:
        low, high = pair.predicted_interval or (predicted, predicted)
        said += f" - too close to call (the predicted speedup's interval {low:.2f}-{high:.2f}x spans 1)"
    if predicted >= 0.8 * macs:
        return f"{said}, close to the MAC ratio's {macs:.1f}x"
    main, which = (dw, "depthwise") if dw.seconds >= pw.seconds else (pw, "pointwise")
    share = main.seconds / (dw.seconds + pw.seconds)
    reason = _REASON.get(main.bound) or (f"compute-bound at {100 * main.efficiency:.0f}% of the matmul peak"
                                         if main.efficiency else "compute-bound")
    return (f"{said}; the MAC ratio promised {macs:.1f}x because the {which} kernel ({100 * share:.0f}% of the "
            f"pair's time) is {reason}")


def ratio_cell(lat: Latency) -> str:
    """measured / predicted: 1.00 where the model is right, 2.00 where the kernel took twice as long."""
    t, p = lat.timing, lat.predicted
    return f"{t.median / p.seconds:.2f}" if t is not None and t.median and p is not None and p.seconds else ""


def efficiency_cell(lat: Latency) -> str:
    p = lat.predicted
    return f"{100 * p.efficiency:.0f}%" if p is not None and p.efficiency is not None and lat.macs else ""


def layer_grid(rows: list[Latency], pair: PairLatency | None, context: dict[str, Any]) -> Grid:
    """Theory, prediction and measurement of a layer (and, with `pair`, its separable pair and the verdict)."""
    measured_any = any(r.timing is not None for r in rows)
    predicted_by = context.get("prediction", "predicted from the device's ceilings")
    grid = Grid(title=f"latency on {context['device']}",
                columns=[name("kernel"), Column("MACs"), Column("predicted"), text("bound"), Column("of peak"),
                         Column("measured"), Column("IQR"), Column("runs"), Column("meas/pred"), text("")],
                caption=(caption(context) + "; " + predicted_by) if measured_any
                else predicted_by + "; --time measures")
    for i, r in enumerate(rows):
        t = r.timing
        grid.add(r.name, exact(r.macs), predicted_cell(r.predicted),
                 r.predicted.bound if r.predicted else "", efficiency_cell(r), measured_cell(t),
                 seconds(t.iqr) if t is not None and not t.error else "", str(t.runs) if t is not None else "",
                 ratio_cell(r), quality_cell(t), end_section=pair is not None and i in (0, 2))
    if pair is not None:
        grid.notes.append(verdict_line(pair))
        if explain(pair):
            grid.notes.append(explain(pair))
    if any(quality_cell(r.timing) for r in rows):
        grid.notes.append(UNRELIABLE)
    return grid


def caption(context: dict[str, Any]) -> str:
    threads = context["threads"]
    return (f"median of repeated runs (torch.utils.benchmark), {context['dtype']}"
            + (", channels-last" if context.get("channels_last") else "")
            + f", {threads} thread{'s' if threads != 1 else ''}, TF32 {'on' if context['tf32'] else 'off'}")


def layers_grid(per_layer: list[Latency], context: dict[str, Any], end_to_end: Timing | None = None,
                title: str = "", whole: float | None = None) -> Grid:
    """Every weighted layer of a network or model: predicted and measured, each run on its own; with pairs, its
    separable pair measured beside it; the sum; and (for a model) the whole forward end to end."""
    pairs = any(lat.pair is not None for lat in per_layer)
    columns = [name("layer"), Column("MACs"), Column("predicted"), text("bound"), Column("measured"), Column("IQR"),
               Column("meas/pred"), text("")]
    if pairs:
        columns += [Column("as separable"), Column("speedup"), Column("(MACs)")]
    measured_any = end_to_end is not None or any(lat.timing is not None for lat in per_layer)
    grid = Grid(title=title or f"{'measured' if measured_any else 'predicted'} on {context['device']}",
                columns=columns,
                caption=(caption(context) if measured_any else "predicted, not measured (--time measures)")
                + "; each layer run on its own"
                + ("; as separable: its depthwise + pointwise pair, measured" if pairs else "")
                + (f"; {context['prediction']}" if context.get("prediction") else "")
                + ("; end to end predicted over every op the trace records" if whole else ""))
    for lat in per_layer:
        t = lat.timing
        cells = [lat.name, exact(lat.macs), predicted_cell(lat.predicted),
                 lat.predicted.bound if lat.predicted else "", measured_cell(t),
                 "" if t is None or t.error else seconds(t.iqr), ratio_cell(lat), quality_cell(t)]
        if pairs:
            p = lat.pair
            cells += [measured_cell(p.pair.timing), speedup(p.measured_speedup), speedup(p.mac_speedup)] if p \
                else ["", "", ""]
        grid.add(*cells)
    predicted, measured = sums(per_layer)
    blank = [""] * (3 if pairs else 0)
    grid.add("sum of the layers", "", seconds(predicted), "", seconds(measured), "",
             f"{measured / predicted:.2f}" if measured and predicted else "", "", *blank, end_section=True)
    if end_to_end is not None:
        how = f"; predicted as {context['whole_model']}" if whole and context.get("whole_model") else ""
        grid.add(f"end to end (whole forward{how})", "", seconds(whole) if whole else "", "", measured_cell(end_to_end),
                 "" if end_to_end.error else seconds(end_to_end.iqr),
                 f"{end_to_end.median / whole:.2f}" if whole and end_to_end.median else "",
                 quality_cell(end_to_end), *blank)
    if any(quality_cell(lat.timing) for lat in per_layer) or quality_cell(end_to_end):
        grid.notes.append(UNRELIABLE)
    return grid


def section(per_layer: list[Latency], context: dict[str, Any]) -> dict[str, Any]:
    """The JSON `timing` object of a network or model: the conditions, every row, the sums."""
    predicted, measured = sums(per_layer)
    rows = [lat.to_dict() for lat in per_layer]
    # `layers` is the name schema 1 started with for these two commands; `rows` is every command's name
    return {**context, "rows": rows, "layers": rows, "predicted_s": predicted, "measured_s": measured}


def sums(latencies: list[Latency] | tuple[Latency, ...]) -> tuple[float, float | None]:
    """(predicted, measured) sums of the rows (`measure.latency.latency_sums`)."""
    from dscalc.measure.latency import latency_sums

    return latency_sums(list(latencies))

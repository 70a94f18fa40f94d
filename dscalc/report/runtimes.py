"""`--runtime A,B,...`, drawn: a study's runs on several runtimes (torch eager, torch.compile, ONNX Runtime,
LiteRT), side by side - for `layer`, `network`, `profile`, `compare`, `sweep` and `device`.

Each runtime was measured by the study (`dscalc.study`), by the same code as the default one, its settings
differing only in `runtime`; here its `Run` is drawn beside the others. In JSON, `timing`
is the first runtime's object (the schema of a single runtime) and `runtimes` lists one such object per runtime;
CSV has one line per row and runtime (`timing.runtime` says which)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dscalc.report import latency as lat
from dscalc.report.fmt import exact, seconds, shape, speedup
from dscalc.report.heads import add_head_rows, add_model_head_notes, model_title, variant_title
from dscalc.report.model import Column, Grid, Report, name, text

if TYPE_CHECKING:
    from dscalc.measure.latency import Latency
    from dscalc.measure.sweep import SweepRow
    from dscalc.measure.timer import Timing
    from dscalc.study.compare import CompareStudy
    from dscalc.study.device import DeviceStudy
    from dscalc.study.model import ModelStudy
    from dscalc.study.network import NetworkStudy
    from dscalc.study.records import Run

#: said under every grid with a setup column or row
SETUP = "setup: seconds to build the runtime's call (compile, export + session, conversion), never in a median"
#: the mark of a noisy timing in side-by-side cells
NOISY = "*"


def summary(context: dict[str, Any], timing: Timing | None = None) -> str:
    """'ONNX Runtime 1.32.0 (CPUExecutionProvider, ORT_ENABLE_ALL, 2 intra-op threads)'."""
    label = f"{context['runtime_label']} {context['runtime_version']}"
    s = timing.runtime_settings if timing is not None else {}
    name_ = context["runtime"]
    if name_ == "onnxruntime" and s:
        n = s.get("intra_op_num_threads")
        detail = f"{s.get('provider')}, {s.get('graph_optimization_level')}, {n} intra-op thread{'s' * (n != 1)}"
    elif name_ == "litert" and s:
        n = s.get("num_threads")
        detail = f"{s.get('converter')}, {s.get('delegate')}, {n} thread{'s' * (n != 1)}, {s.get('layout')}"
    elif name_ == "compile" and s:
        detail = f"{s.get('backend')}, {s.get('graphs')} graph{'s' * (s.get('graphs') != 1)}, " \
                 f"{s.get('graph_breaks')} graph breaks"
    else:
        detail = ""
    return label + (f" ({detail})" if detail else "")


def _first_timing(rows: Sequence[Latency]) -> Timing | None:
    return next((r.timing for r in rows if r.timing is not None and not r.timing.error), None)


def _caption(context: dict[str, Any]) -> str:
    threads = context["threads"]
    return (f"median of repeated runs (one protocol for every runtime: warm-up, timed blocks, IQR), "
            f"{context['dtype']}" + (", channels-last" if context.get("channels_last") else "")
            + f", {threads} thread{'s' if threads != 1 else ''}")


def _measured(t: Timing | None) -> str:
    cell = lat.measured_cell(t)
    return cell + (NOISY if t is not None and not t.error and not t.reliable else "")


def _noisy_note(grid: Grid, timings: Sequence[Timing | None]) -> None:
    if any(t is not None and not t.error and not t.reliable for t in timings):
        grid.notes.append(f"{NOISY} {lat.UNRELIABLE}")


def _long_records(records: list[dict[str, Any]], runs: Sequence[Run], by_name: list[dict[str, Latency]],
                  extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """CSV: the command's records once per runtime, each with that runtime's timing fields."""
    out = []
    for i, (one, latencies) in enumerate(zip(runs, by_name)):
        copied = copy.deepcopy(records)
        lat.attach(copied, latencies)
        for record in copied:
            record.setdefault("timing", {}).setdefault("runtime", one.context["runtime"])
        if extra:
            copied[-1].setdefault("timing", {}).update(extra[i])
        out += copied
    return out


# ------------------------------------------------------------------------------------------ layer and compare

def layer_grid(runs: Sequence[Run]) -> Grid:
    """Each kernel on each runtime, one row each, the runtimes of a kernel together; the verdict per runtime."""
    first = runs[0]
    grid = Grid(title=f"latency on {first.context['device']}, by runtime",
                columns=[name("kernel"), text("runtime"), Column("MACs"), Column("predicted"), Column("measured"),
                         Column("IQR"), Column("runs"), Column("setup")],
                caption=_caption(first.context) + "; " + SETUP)
    for i, row in enumerate(first.rows):
        for j, one in enumerate(runs):
            r = one.rows[i]
            t = r.timing
            grid.add(row.name if j == 0 else "", one.context["runtime"], exact(r.macs) if j == 0 else "",
                     (seconds(r.predicted.seconds) if r.predicted else "-") if j == 0 else "", _measured(t),
                     seconds(t.iqr) if t is not None and not t.error else "", str(t.runs) if t is not None else "",
                     seconds(t.setup_s) if t is not None and t.setup_s is not None else "",
                     end_section=j == len(runs) - 1 and i < len(first.rows) - 1)
    for one in runs:
        grid.notes.append(f"{one.context['runtime']}: {summary(one.context, _first_timing(one.rows))}")
        if one.pair is not None:
            grid.notes.append("  " + lat.verdict_line(one.pair))
    _noisy_note(grid, [r.timing for one in runs for r in one.rows])
    return grid


def add_layer_runs(report: Report, measured: Sequence[Run]) -> None:
    """`layer --time --runtime ...` (and `compare` of a layer): each runtime's latency after the counts."""
    report.grids.append(layer_grid(measured))
    objects = []
    by_name: list[dict[str, Latency]] = []
    extra: list[dict[str, Any]] = []
    for one in measured:
        data = one.pair.to_dict() if one.pair is not None else {"rows": [one.rows[0].to_dict()]}
        objects.append({**one.context, **data})
        by_name.append(dict(zip([r["name"] for r in report.records], one.rows)))
        extra.append({"speedup": one.pair.speedups(), "verdict": one.pair.verdict_text}
                     if one.pair is not None else {})
    report.data["timing"] = objects[0]
    report.data["runtimes"] = objects
    paired = any(one.pair is not None for one in measured)
    report.records = _long_records(report.records, measured, by_name, extra if paired else None)


# ---------------------------------------------------------------------------------------- network and profile

def layers_grid(runs: Sequence[Run], title: str) -> Grid:
    """Every weighted layer: predicted once, measured on each runtime (and, with pairs, its separable speedup per
    runtime); the sums; a model's whole forward; the setup each runtime spent."""
    first = runs[0]
    pairs = any(r.pair is not None for r in first.rows)
    names = [one.context["runtime"] for one in runs]
    columns = [name("layer"), Column("MACs"), Column("predicted"), *(Column(n) for n in names)]
    if pairs:
        columns += [Column("(MACs)"), *(Column(f"{n} speedup") for n in names)]
    grid = Grid(title=title, columns=columns,
                caption=_caption(first.context) + "; each layer run on its own"
                + ("; speedup: measured standard / its depthwise + pointwise pair (> 1: separable is faster)"
                   if pairs else "") + "; " + SETUP)
    blank = [""] * ((1 + len(runs)) if pairs else 0)
    for i, row in enumerate(first.rows):
        cells = [row.name, exact(row.macs), seconds(row.predicted.seconds) if row.predicted else "-",
                 *(_measured(one.rows[i].timing) for one in runs)]
        if pairs:
            p = row.pair
            cells += [speedup(p.mac_speedup) if p else "", *(_pair_speedup(one.rows[i]) for one in runs)]
        grid.add(*cells)
    sums = [lat.sums(one.rows) for one in runs]
    grid.add("sum of the layers", "", seconds(sums[0][0]), *(seconds(m) for _, m in sums), *blank,
             end_section=True)
    if any(one.end_to_end is not None for one in runs):
        grid.add("end to end (whole forward)", "", "", *(_measured(one.end_to_end) for one in runs), *blank)
    setups = [_setup_total(one) for one in runs]
    if any(s is not None for s in setups):
        grid.add("setup (all of the above)", "", "", *(seconds(s) if s is not None else "" for s in setups), *blank)
    for one in runs:
        grid.notes.append(f"{one.context['runtime']}: {summary(one.context, _first_timing(one.rows))}")
    _noisy_note(grid, [r.timing for one in runs for r in one.rows] + [one.end_to_end for one in runs])
    return grid


def _pair_speedup(row: Latency) -> str:
    return speedup(row.pair.measured_speedup) if row.pair is not None else ""


def _setup_total(one: Run) -> float | None:
    timings = [r.timing for r in one.rows] + [r.pair.pair.timing for r in one.rows if r.pair is not None]
    timings += [one.end_to_end]
    got = [t.setup_s for t in timings if t is not None and t.setup_s is not None]
    return sum(got) if got else None


def _section(one: Run) -> dict[str, Any]:
    section = lat.section(list(one.rows), one.context)
    if one.end_to_end is not None:
        section["end_to_end"] = one.end_to_end.to_dict()
    return section


def _attach_runs(report: Report, measured: Sequence[Run]) -> None:
    objects = [_section(one) for one in measured]
    report.data["timing"] = objects[0]
    report.data["runtimes"] = objects
    report.records = _long_records(report.records, measured, [{r.name: r for r in one.rows} for one in measured])


def add_network_runs(report: Report, study: NetworkStudy) -> None:
    """`network --time --runtime ...`: every weighted layer on each runtime, after the counts."""
    runs = study.runs
    report.grids.insert(1, layers_grid(runs, f"{study.meta['network']}: measured on {runs[0].context['device']}, "
                                             "by runtime"))
    _attach_runs(report, runs)


def add_profile_runs(report: Report, study: ModelStudy) -> None:
    """`profile --time --runtime ...`: each conv beside its separable pair and the whole forward, per runtime."""
    if study.format == "tflite":
        return _tflite_file(report, study)
    runs = study.runs
    report.grids.append(layers_grid(runs, f"{study.target}: measured on {runs[0].context['device']}, by runtime"))
    _attach_runs(report, runs)


def _tflite_file(report: Report, study: ModelStudy) -> None:
    """`profile model.tflite --time --runtime litert`: the file itself run on LiteRT as it is (no conversion): the
    whole forward only (a flatbuffer has no modules to run one by one)."""
    measured = study.runs
    grid = Grid(title=f"{study.target}: the file as it is, measured on {measured[0].context['device']}",
                columns=[name(""), *(Column(one.context["runtime"]) for one in measured)],
                caption=_caption(measured[0].context) + "; " + SETUP)
    grid.add("end to end (whole forward)", *(_measured(one.end_to_end) for one in measured))
    grid.add("setup (load + allocate)", *(seconds(one.end_to_end.setup_s) if one.end_to_end else ""
                                          for one in measured))
    for one in measured:
        grid.notes.append(f"{one.context['runtime']}: {summary(one.context, one.end_to_end)}")
    report.grids.append(grid)
    _attach_runs(report, measured)


# ---------------------------------------------------------------------------------- compare: network and model

def _pairs_grid(title: str, names: tuple[str, str], counts: list[tuple[str, int, int]],
                timed: list[tuple[str, float | None, float | None]]) -> Grid:
    grid = Grid(title=title, columns=[name(""), Column(names[0]), Column(names[1]), Column("ratio")])
    for label, a, b in counts:
        grid.add(label, exact(a), exact(b), f"{b / a:.3f}" if a else "")
    for label, ta, tb in timed:
        grid.add(label, seconds(ta), seconds(tb), f"{tb / ta:.3f}" if ta and tb is not None else "")
    return grid


def _compare_data(kind: str, names: tuple[str, str], first: dict[str, Any], second: dict[str, Any],
                  contexts: list[dict[str, Any]], medians: list[tuple[float | None, float | None]],
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `runtimes` objects (one per runtime: both measurements and the speedup) and the long CSV records."""
    objects, records = [], []
    for context, (m0, m1) in zip(contexts, medians):
        gain = m0 / m1 if m0 and m1 else None
        objects.append({**context, "original_s": m0, "variant_s": m1, "speedup": gain})
        for label, counts, m in ((names[0], first, m0), (names[1], second, m1)):
            records.append({"name": label, "kind": kind, **counts, "measured_s": m,
                            "timing": {"runtime": context["runtime"], "runtime_version": context["runtime_version"],
                                       "median_s": m}})
    return objects, records


def compare_network(study: CompareStudy) -> Report:
    """A network and its `--as` variant: counts, predicted, and the sum of the measured layers on each runtime."""
    a, b = study.original, study.variant
    assert a is not None and b is not None
    contexts = list(study.contexts)
    medians = list(zip(a.measured_s, b.measured_s))
    predicted = (a.predicted_s, b.predicted_s)
    t0, t1 = a.totals, b.totals
    names = (a.name, b.name)
    grid = _pairs_grid(f"{a.name} vs {variant_title(study.as_)} ({study.device})", names,
                       [("params", t0["params"], t1["params"]), ("weights", t0["weights"], t1["weights"]),
                        ("MACs", t0["macs"], t1["macs"])],
                       [("predicted (sum of layers)", *predicted)]
                       + [(f"measured (sum of layers), {c['runtime']}", m0, m1)
                          for c, (m0, m1) in zip(contexts, medians)])
    grid.caption = "latency: each weighted layer timed (or predicted) on its own, summed; BN/activations excluded"
    grid.notes += [f"{c['runtime']}: {summary(c)}" for c in contexts]
    first = {**t0, "predicted_s": predicted[0], "measured_s": medians[0][0]}
    second = {**t1, "predicted_s": predicted[1], "measured_s": medians[0][1]}
    objects, records = _compare_data("network", names, {**t0, "predicted_s": predicted[0]},
                                     {**t1, "predicted_s": predicted[1]}, contexts, medians)
    data = {"command": "compare", "network": a.name, "as": study.as_, "device": study.device, "original": first,
            "variant": second, "runtimes": objects}
    add_head_rows(grid, data, study)
    return Report("compare", data, records, [grid])


def compare_model(study: CompareStudy) -> Report:
    """A model and its separable copy: counts, and each runtime's end-to-end latency of both."""
    a, b = study.original, study.variant
    assert a is not None and b is not None
    contexts = list(study.contexts)
    medians = list(zip(a.measured_s, b.measured_s))
    title, label = model_title(study)
    names = (study.target, label)
    grid = _pairs_grid(title, names,
                       [("params", a.totals["params"], b.totals["params"]),
                        ("MACs", a.totals["macs"], b.totals["macs"])],
                       [(f"measured end to end, {c['runtime']}", m0, m1) for c, (m0, m1) in zip(contexts, medians)])
    grid.notes += [f"{c['runtime']}: {summary(c, t)}" for c, t in zip(contexts, a.timings)]
    timings = [t for pair in zip(a.timings, b.timings) for t in pair]
    grid.notes += [f"{t.runtime}: {t.error}" for t in timings if t is not None and t.error]
    objects, records = _compare_data("model", ("original", label), dict(a.totals), dict(b.totals), contexts,
                                     medians)
    data = {"command": "compare", "model": study.target, "replaced": study.replaced,
            "original": {**a.totals, "measured_s": medians[0][0]}, "variant": {**b.totals, "measured_s": medians[0][1]},
            "runtimes": objects}
    add_model_head_notes(grid, data, study)
    return Report("compare", data, records, [grid])


# ------------------------------------------------------------------------------------------------------- sweep

def _verdict(row: SweepRow) -> str:
    v = row.pair.verdict
    if v is None:
        t = row.pair.original.timing
        return (t.error if t is not None and t.error else row.pair.pair.timing.error
                if row.pair.pair.timing is not None and row.pair.pair.timing.error else "-") or "-"
    return v.short


def sweep_table(rows: list[SweepRow], names: list[str], context: dict[str, Any]) -> Report:
    """One line per config: MAC and predicted speedup once, then each runtime's measured speedup and winner;
    how often the runtimes disagree on the winner."""
    configs: dict[str, list[SweepRow]] = {}
    for r in rows:
        configs.setdefault(r.name, []).append(r)
    grid = Grid(title=f"separable vs standard on {context['device']}, by runtime",
                columns=[name("cin->cout"), Column("k"), Column("size"), Column("batch"), Column("dtype", "left"),
                         Column("MACs"), Column("predicted"), *(Column(n) for n in names), text("winner")],
                caption="speedup = standard time / separable time (> 1: separable is faster), measured on each "
                        "runtime; MACs: theory; predicted: from this device's calibration (or its roofline); winner "
                        "per runtime, in the order of the columns ('close': too close to call)")
    disagree = measured = 0
    for group in configs.values():
        r0 = group[0]
        verdicts = [_verdict(r) for r in group]
        cells = []
        for r in group:
            std, sep = r.pair.original.timing, r.pair.pair.timing
            noisy = std is not None and sep is not None and not (std.reliable and sep.reliable)
            cells.append(speedup(r.pair.measured_speedup) + (NOISY if noisy and r.pair.measured_speedup else ""))
        decided = [v for v in verdicts if v in ("separable", "standard", "too close")]
        if len(decided) == len(group):
            measured += 1
            disagree += len(set(decided)) > 1
        short = {"separable": "sep", "standard": "std", "too close": "close"}
        grid.add(f"{r0.cin}->{r0.cout}", str(r0.k), shape((r0.size, r0.size)), str(r0.batch),
                 r0.dtype + (" cl" if r0.channels_last else ""), speedup(r0.pair.mac_speedup),
                 speedup(r0.pair.predicted_speedup), *cells, " / ".join(short.get(v, v) for v in verdicts))
    if measured:
        grid.notes.append(f"the runtimes disagree on the winner in {disagree} of {measured} configs")
    for n in names:
        first = next((r for r in rows if r.runtime == n), None)
        t = first.pair.original.timing if first else None
        grid.notes.append(f"{n}: {summary(runtimes_context(context, n), t)}")
    _noisy_note(grid, [t for r in rows for t in (r.pair.original.timing, r.pair.pair.timing)])
    records = [r.to_dict() for r in rows]
    data = {"command": "sweep", **context, "runtimes": names, "rows": records, "measured": measured,
            "runtimes_disagree": disagree if measured else None}
    return Report("sweep", data, records, [grid])


def runtimes_context(context: dict[str, Any], runtime: str) -> dict[str, Any]:
    from dscalc.measure import runtimes

    entry = runtimes.RUNTIMES[runtime]
    return {**context, "runtime": runtime, "runtime_label": entry.label, "runtime_version": entry.version()}


# ------------------------------------------------------------------------------------------------------ device

def add_device(report: Report, study: DeviceStudy) -> None:
    """Each runtime's own matmul peak and per-call floor, after the device's ceilings.

    Per runtime: the float32 matmul peak (each runtime brings its own GEMM: MKL/oneDNN, inductor, MLAS, XNNPACK)
    and the per-call floor (a 1-element add: the fixed cost every kernel or session call pays). Not per runtime:
    the memory bandwidth, a property of the machine that no runtime can exceed (and a plain copy is what ONNX
    Runtime and LiteRT optimise away), and the float16/bfloat16 peaks (the runtimes time float32 on a CPU)."""
    assert study.ceilings is not None
    n = study.matmul_n
    grid = Grid(title=f"per runtime ({study.ceilings.name})",
                columns=[name("runtime"), Column("peak matmul, float32"), Column("per-call floor"),
                         Column("setup"), text("")],
                caption=f"matmul: {n}² @ {n}² float32; per-call floor: a 1-element add; " + SETUP)
    objects, timings = [], []
    for context, matmul, floor in study.runtimes:
        peak = 2 * n**3 / matmul.median if matmul.median else None
        setup = sum(t.setup_s for t in (matmul, floor) if t.setup_s is not None) if matmul.setup_s is not None \
            else None
        note = "; ".join(t.error for t in (matmul, floor) if t.error)
        timings += [matmul, floor]
        grid.add(context["runtime"], f"{peak / 1e9:,.1f} GFLOP/s" if peak else "-", _measured(floor),
                 seconds(setup) if setup is not None else "", note)
        objects.append({**context, "peak_flops": {"float32": peak}, "launch": floor.median,
                        "matmul": matmul.to_dict(), "floor": floor.to_dict()})
    grid.notes += [f"{c['runtime']}: {summary(c)}" for c in objects]
    grid.notes.append("bandwidth is the machine's, measured once above: a runtime cannot copy faster than the "
                      "memory system, and ONNX Runtime and LiteRT optimise a plain copy away")
    _noisy_note(grid, timings)
    report.grids.append(grid)
    report.data["runtimes"] = objects
    report.records += [{"name": o["runtime"], "kind": "runtime", "runtime_version": o["runtime_version"],
                        "peak_flops": o["peak_flops"], "launch": o["launch"]} for o in objects]

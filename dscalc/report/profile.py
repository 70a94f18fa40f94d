"""`dscalc profile`, drawn: a real model traced per module on the meta device - params, MACs, share, the separable
what-if, totals by op kind, the ops not counted - optionally checked against fvcore; with timing settings, each
convolution measured beside its separable pair and the whole forward end to end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.report import latency as lat
from dscalc.report.fmt import binary, exact, in_out, shape, si
from dscalc.report.model import CONVENTIONS, Column, Grid, Report, name, text
from dscalc.report.render import bar

if TYPE_CHECKING:
    from dscalc.study.model import ModelStudy
    from dscalc.study.records import Run
    from dscalc.trace.records import ProfileResult

#: what `params` counts, for the formats not counted by sum(p.numel())
PARAMS_LABEL = {"onnx": "params (initializers, each once)", "keras": "params (weights created trainable)",
                "keras_python": "params (weights created trainable)"}


def counts(result: ProfileResult, meta: dict[str, Any]) -> Report:
    """Per-module rows, totals, totals by op kind, uncounted ops, the fvcore check."""
    tot = result.totals
    data: dict[str, Any] = {"command": "profile", **meta, "conventions": CONVENTIONS, "dtype": result.dtype,
                            "inputs": [list(s) for s in result.inputs], "outputs": [list(s) for s in result.outputs],
                            "rows": [r.to_dict() for r in result.rows], "totals": tot, "memory": result.memory,
                            "by_op_kind": result.by_op_kind, "uncounted": result.uncounted, "notes": result.notes}
    if result.fvcore is not None:
        data["fvcore"] = result.fvcore
    records = [r.to_dict() for r in result.rows]
    fv = result.fvcore or {}
    checked = "total" in fv
    if checked:
        from dscalc.trace.profile import explain, fvcore_extra  # fvcore ran: torch is loaded
        from dscalc.trace.profile import label as fvcore_label
    columns = [name("module"), text("type"), text("input -> output"), Column("params"),
               Column("MACs"), Column("share", "left"), Column("as separable")]
    if checked:
        columns.append(text("fvcore"))
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
                cells.append(f"✗ {r.fvcore - r.macs:+,} "
                             f"({fvcore_label(r.fvcore_diff) if r.fvcore_diff else explain(r.fvcore_ops)})")
        grid.add(*cells)
    grid.notes.extend(result.notes)

    summary = Grid(title="totals", columns=[name(""), Column("count"), Column("")])
    summary.add("MACs (conv + linear + matmul)", exact(tot["macs"]), si(tot["macs"]))
    summary.add("FLOPs (2 x MACs)", exact(tot["flops"]), si(tot["flops"]))
    if tot.get("int8_macs"):
        summary.add("of which int8 MACs (quantized layers)", exact(tot["int8_macs"]), si(tot["int8_macs"]))
    if "bias_adds" in tot:
        summary.add("bias additions (ptflops, torchinfo add them to MACs)", exact(tot["bias_adds"]),
                    si(tot["bias_adds"]))
    params_label = PARAMS_LABEL.get(meta.get("format", ""), "params (sum of p.numel())")
    if tot.get("quantized_params"):
        params_label = "params (p.numel() + quantized weights)"
    summary.add(params_label, exact(tot["params"]), si(tot["params"]))
    if "buffers" in tot:
        summary.add("buffers (state that is not learned: BN statistics, ...)", exact(tot["buffers"]),
                    si(tot["buffers"]))
    if "total_params" in tot:  # Keras' own convention, as model.summary() prints it
        summary.add("Keras trainable params", exact(tot["trainable_params"]), si(tot["trainable_params"]))
        summary.add("Keras non-trainable params", exact(tot["non_trainable_params"]), si(tot["non_trainable_params"]))
        summary.add("Keras total params (count_params())", exact(tot["total_params"]), si(tot["total_params"]))
    if "separable_macs" in tot:
        summary.add("MACs if every k>1 standard/grouped conv were separable", exact(tot["separable_macs"]),
                    si(tot["separable_macs"]))
    if checked:
        summary.add("fvcore total (its 'flops' are MACs)", exact(fv["total"]), si(fv["total"]))
    elif "skipped" in fv:
        summary.notes.append(f"fvcore check skipped: {fv['skipped']}")

    mem = result.memory
    memory = Grid(title=f"memory at {result.dtype}", columns=[name(""), Column("bytes"), Column("")])
    for label, key in (("weights (parameters)", "weights"), ("buffers (BN statistics, ...)", "buffers"),
                       ("inputs", "inputs"), ("activations written (every op's output)", "activations"),
                       ("peak live activations", "peak_activations"),
                       ("total: weights + buffers + inputs + peak", "total")):
        memory.add(label, exact(mem[key]), binary(mem[key]))
    memory.add("bytes moved (every op reads its inputs, writes its output)", exact(tot["bytes"]), binary(tot["bytes"]))

    kinds = Grid(title="by op kind", columns=[name("kind"), Column("ops"), Column("MACs"),
                                              Column("output elements")])
    for kind, v in result.by_op_kind.items():
        kinds.add(kind, exact(v["ops"]), exact(v["macs"]) if v["macs"] else "-", exact(v["elements"]))
    if result.uncounted:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(result.uncounted.items()))
        kinds.notes.append(f"not counted (no MACs): {listed}")
    if checked:
        extra = fvcore_extra(fv["by_operator"])
        if extra:
            kinds.notes.append("fvcore also counts: " + ", ".join(f"{k} {exact(v)}" for k, v in sorted(extra.items())))
    return Report("profile", data, records, [grid, summary, memory, kinds])


def draw(study: ModelStudy) -> Report:
    """The report of a model: its rows, totals, memory and op kinds; its latency (one runtime, or several side by
    side); its training step."""
    meta: dict[str, Any] = {"model": study.target, "depth": study.depth}
    if study.format is not None:
        meta["format"] = study.format
    report = counts(study.result, meta)
    if study.by_runtime:
        from dscalc.report import runtimes

        runtimes.add_profile_runs(report, study)
    elif study.runs:
        _timed(report, study.runs[0])
    if study.training is not None:
        from dscalc.report import training

        training.add_profile(report, study)
    if study.assumed:  # the assumption line: which input size was used
        report.grids[0].notes.insert(0, study.assumed)
        report.data["notes"] = [study.assumed, *report.data.get("notes", [])]
    return report


def _timed(report: Report, run: Run) -> None:
    per_layer, context, whole = list(run.rows), run.context, run.whole
    report.grids.append(lat.layers_grid(per_layer, context, run.end_to_end, whole=whole,
                                        title="" if run.measured else f"predicted on {context['device']}"))
    report.data["timing"] = {**lat.section(per_layer, context), "predicted_end_to_end_s": whole}
    if run.end_to_end is not None:
        report.data["timing"]["end_to_end"] = run.end_to_end.to_dict()
    lat.attach(report.records, {one.name: one for one in per_layer})

"""`--training` on `layer`, `network`, `profile`, `compare` and `sweep`: the training step as report parts - per
layer the forward, grad-input and grad-weight MACs and what autograd keeps; the totals beside the peers' rule of
thumb; the memory (weights, gradients, optimizer state, saved activations, peak) and the largest batch that fits;
with timing settings, forward + backward (and the optimizer step) measured, separable beside standard.

Each builder adds to a command's Report: a `training` object in its JSON, `training.*` columns on its CSV rows,
and grids on screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.cost import training as T
from dscalc.cost.kinds import formula, label
from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.measure.training import PairTraining, TrainingTiming
from dscalc.measure.verdict import Verdict
from dscalc.report import latency as lat
from dscalc.report.fmt import binary, exact, seconds, si, speedup
from dscalc.report.heads import variant_title
from dscalc.report.model import COMPUTE_KINDS, Column, Grid, Report, name, text

if TYPE_CHECKING:
    from dscalc.study.compare import CompareStudy
    from dscalc.study.layer import LayerStudy
    from dscalc.study.model import ModelStudy
    from dscalc.study.network import NetworkStudy
    from dscalc.study.sweep import SweepStudy

# -------------------------------------------------------------------------------------------- formatting

def size(n: int | None) -> str:
    """Bytes in binary units to two decimals (training memory is read against a limit): 12.33 MiB."""
    return binary(n, 2)


def _grads(row: T.TrainingRow) -> str:
    parts = (["x"] if row.input_grad else []) + (["w"] if row.weight_grad else [])
    return ",".join(parts) or "-"


NOTE_CONVENTIONS = ("grad-input = grad-weight = forward MACs for conv and linear layers, each counted where autograd "
                    "computes it: no grad-input for a network's first layer or a model's input, no grad-weight for a "
                    "frozen parameter; bias gradients are additions, not MACs; FLOPs = 2 x MACs")


def _flop_counter_note(rows: list[T.TrainingRow]) -> str | None:
    """What FlopCounterMode (torch 2.14.1) reports for the grouped layers' weight gradients: groups x too many."""
    wrong = [r for r in rows if r.flop_counter_grad_weight is not None]
    if not wrong:
        return None
    ours = sum(r.grad_weight_macs for r in wrong)
    theirs = sum(r.flop_counter_grad_weight or 0 for r in wrong)
    return (f"FlopCounterMode (torch 2.14.1) counts {exact(theirs)} grad-weight MACs for the {len(wrong)} grouped/"
            f"depthwise layer{'s' if len(wrong) != 1 else ''} ({theirs / ours:.1f}x the exact {exact(ours)}): "
            "it does not divide the weight gradient by groups")


def totals_grid(tr: T.Training, title: str = "training step: forward + backward") -> Grid:
    tot = tr.totals
    grid = Grid(title=title, columns=[name(""), Column("count"), Column("")])
    for label_, value in (("forward MACs", tot["forward_macs"]),
                          ("grad-input MACs", tot["grad_input_macs"]),
                          ("grad-weight MACs", tot["grad_weight_macs"])):
        grid.add(label_, exact(value), si(value))
    if tot["recompute_macs"]:
        grid.add("recomputed in backward (fused attention)", exact(tot["recompute_macs"]), si(tot["recompute_macs"]))
    grid.add("backward MACs", exact(tot["backward_macs"]), si(tot["backward_macs"]))
    grid.add("training MACs (forward + backward)", exact(tot["training_macs"]), si(tot["training_macs"]))
    grid.add("training FLOPs (2 x MACs)", exact(tot["training_flops"]), si(tot["training_flops"]), end_section=True)
    grid.add("bias-gradient additions (not MACs)", exact(tot["grad_bias_adds"]), si(tot["grad_bias_adds"]))
    grid.add("backward if it were 2 x forward (DeepSpeed, calflops)", exact(tot["two_x_forward_macs"]),
             si(tot["two_x_forward_macs"]))
    if tot["frozen_params"]:
        grid.add("frozen parameters (no gradient)", exact(tot["frozen_params"]), si(tot["frozen_params"]))
    diff = tot["backward_macs"] - tot["two_x_forward_macs"]
    if diff and tot["two_x_forward_macs"]:
        why = "gradients autograd does not compute" if diff < 0 else "recomputed or extra gradient work"
        grid.notes.append(f"backward = {tot['backward_macs'] / tot['two_x_forward_macs']:.4f} x (2 x forward): "
                          f"{diff:+,} MACs ({why})")
    note = _flop_counter_note(tr.rows)
    if note:
        grid.notes.append(note)
    return grid


def memory_grid(memories: list[tuple[str, T.Memory]], batch: int) -> Grid:
    first = memories[0][1]
    opt = T.OPTIMIZERS[first.optimizer]
    grid = Grid(title=f"training memory: {first.optimizer}, {first.dtype}, batch {batch}",
                columns=[name("")] + [Column(h) for h, _ in memories])
    state = {"sgd": "none", "momentum": "momentum buffer", "adam": "exp_avg + exp_avg_sq + step",
             "adamw": "exp_avg + exp_avg_sq + step"}[opt.name]
    parts = (("weights", "weights"), ("buffers (BN running statistics)", "buffers"), ("gradients", "gradients"),
             (f"optimizer state ({state})", "optimizer_state"),
             ("saved activations (autograd, each storage once)", "saved"))
    for label_, key in parts:
        grid.add(label_, *[size(getattr(m, key)) for _, m in memories])
    how = "simulated" if first.method == "simulated" else "estimate"
    grid.add(f"peak, forward + backward ({how})", *[size(m.peak_backward) for _, m in memories])
    grid.add("peak, optimizer step", *[size(m.peak_step) for _, m in memories], end_section=True)
    grid.add("peak", *[f"{size(m.peak)} ({m.peak_phase})" for _, m in memories])
    grid.notes += list(first.assumptions)
    return grid


def fit_line(fit: T.BatchFit | None, what: str = "") -> str | None:
    if fit is None:
        return None
    more = f"; batch {fit.batch + 1:,} needs {fit.next_peak:,}" if fit.next_peak is not None else ""
    return (f"largest batch{what} that fits in {size(fit.limit)} ({fit.limit:,} bytes): {fit.batch:,} "
            f"(its peak {fit.peak:,} bytes{more})")


def _attach(records: list[dict[str, Any]], rows: dict[str, dict[str, Any]]) -> set[str]:
    """`training.*` columns on the CSV records of the rows that have them (matched by name)."""
    used = set()
    for record in records:
        found = rows.get(record.get("name", ""))
        if found is not None:
            record["training"] = found
            used.add(record["name"])
    return used


#: the network rows the per-layer training table shows without --all-layers (as the network table does)
SHOWN_KINDS = COMPUTE_KINDS


def _rows_grid(tr: T.Training, title: str, types: dict[str, str] | None = None, only_weighted: bool = False) -> Grid:
    columns = [name("layer")] + ([text("type")] if types is not None else []) + [
        Column("forward MACs"), Column("grad-input"), Column("grad-weight"), Column("∂"), Column("saved")]
    grid = Grid(title=title, columns=columns, caption=NOTE_CONVENTIONS
                + "; ∂: x = input gradient, w = weight gradient computed; saved: activations autograd keeps"
                + ("; BN/activation rows (and what they keep): --all-layers or --format json" if only_weighted
                   else ""))
    for r in tr.rows:
        if only_weighted and r.kind not in SHOWN_KINDS:
            continue
        cells = [r.name] + ([types.get(r.name, "")] if types is not None else []) + [
            exact(r.forward_macs), exact(r.grad_input_macs), exact(r.grad_weight_macs), _grads(r),
            size(r.saved_bytes) if r.saved_bytes else ""]
        grid.add(*cells)
    return grid


# ------------------------------------------------------------------------------------------------- layer


def add_layer(report: Report, study: LayerStudy) -> None:
    """`layer --training` (and `compare` of a layer): the backward of the layer and its separable pair, exactly,
    their memory, and when measured the training step."""
    assert study.training is not None
    layer, comparison = study.layer, study.comparison
    one, pair, timed, context = study.training.one, study.training.pair, study.training.timed, study.training.context
    data = one.to_dict()
    rows = list(one.rows) + (list(pair.rows) if pair else [])
    data["rows"] = [{"name": r.name, "kind": r.kind, **r.to_dict(one.opt, one.itemsize)} for r in rows]
    by_name = {r.name: r.to_dict(one.opt, one.itemsize) for r in rows}
    if pair is not None:
        ptot = pair.totals
        data["separable"] = {"totals": ptot, "memory": pair.memory.to_dict(),
                             **({"fit": pair.fit.to_dict()} if pair.fit else {})}
        data["ratio"] = {"training_macs": ptot["training_macs"] / one.totals["training_macs"],
                         "peak": pair.memory.peak / one.memory.peak}
        by_name["separable"] = {k: v for k, v in ptot.items() if k != "two_x_forward_macs"}
    _attach(report.records, by_name)

    grid = Grid(title=f"training: {label(layer)} - forward and backward",
                columns=[name("layer"), Column("forward MACs"), Column("grad-input"), Column("grad-weight"),
                         Column("training MACs")],
                caption="a standalone layer is taken as a layer inside a network: both gradients")
    for i, r in enumerate(rows):
        shown = _layer_of(r, layer, comparison)
        grid.add(label(shown) if shown is not None else r.name, exact(r.forward_macs), exact(r.grad_input_macs),
                 exact(r.grad_weight_macs), exact(r.training_macs),
                 end_section=i == 0 or (pair is not None and i == len(rows) - 1))
    sym, num = formula(layer)
    grid.notes.append(f"grad-input = grad-weight = forward = {sym} = {num} = {exact(layer.macs)} MACs (each forward "
                      "multiply has one partner in each gradient)")
    if pair is not None:
        ptot, otot = pair.totals, one.totals
        grid.add("separable = dw + pw", exact(ptot["forward_macs"]), exact(ptot["grad_input_macs"]),
                 exact(ptot["grad_weight_macs"]), exact(ptot["training_macs"]))
        grid.add(f"fewer by (vs {layer.kind})", _fewer(otot["forward_macs"], ptot["forward_macs"]),
                 _fewer(otot["grad_input_macs"], ptot["grad_input_macs"]),
                 _fewer(otot["grad_weight_macs"], ptot["grad_weight_macs"]),
                 _fewer(otot["training_macs"], ptot["training_macs"]))
    bias = sum(r.grad_bias_adds for r in rows)
    if bias:
        grid.notes.append(f"bias gradients: {exact(bias)} additions in all (one per output element), not MACs")
    note = _flop_counter_note(rows)
    if note:
        grid.notes.append(note)
    memories = [(layer.kind, one.memory)] + ([("separable", pair.memory)] if pair else [])
    mem = memory_grid(memories, layer.input_shape[0])
    lines = [fit_line(one.fit, f" of the {layer.kind} layer"), fit_line(pair.fit if pair else None,
                                                                       " of the separable pair")]
    mem.notes[:0] = [line for line in lines if line]
    report.grids += [grid, mem]
    if context is not None and isinstance(timed, PairTraining):
        data["timing"] = {**context, **timed.to_dict()}
        report.grids.append(pair_grid(timed, context))
        for record in report.records:
            if record.get("name") == layer.name:
                record.setdefault("training", {})["timing"] = timed.original.to_dict()
            elif record.get("name") == "separable":
                record.setdefault("training", {})["timing"] = {**timed.pair.to_dict(),
                                                               "speedup": timed.to_dict()["speedup"]}
    elif context is not None and isinstance(timed, TrainingTiming):
        data["timing"] = {**context, "rows": [timed.to_dict()]}
        report.grids.append(timing_grid([timed], context))
        report.records[0].setdefault("training", {})["timing"] = timed.to_dict()
    report.data["training"] = data


def _layer_of(row: T.TrainingRow, layer: LayerCost, comparison: SeparableComparison | None) -> LayerCost | None:
    if row.name == layer.name:
        return layer
    if comparison is not None:
        for part in (comparison.depthwise, comparison.pointwise):
            if row.name == part.name:
                return part
    return None


def _fewer(a: int, b: int) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


# ------------------------------------------------------------------------------------------ timing grids


def _quality(t: TrainingTiming) -> str:
    """'' when every measurement of the row is reliable, else which are not: 'noisy: fwd, fwd+bwd'."""
    bad = [label_ for label_, m in (("fwd", t.forward), ("fwd+bwd", t.backward), ("step", t.step))
           if lat.quality_cell(m)]
    return f"noisy: {', '.join(bad)}" if bad else ""


def _cells(t: TrainingTiming) -> list[str]:
    step = t.step
    ratio = t.backward_over_forward
    return [lat.measured_cell(t.forward), lat.measured_cell(t.backward),
            lat.measured_cell(step) if step is not None else "", f"{ratio:.2f}x" if ratio else "-", _quality(t)]


def timing_grid(rows: list[TrainingTiming], context: dict[str, Any], title: str = "") -> Grid:
    grid = Grid(title=title or f"training, measured on {context['device']}",
                columns=[name("kernel"), Column("forward"), Column("fwd + bwd"), Column("+ step"),
                         Column("fwd+bwd / fwd"), text("")],
                caption=lat.caption(context) + "; training mode, autograd on; step = forward + backward + "
                "optimizer.step(), gradients set to None first")
    for r in rows:
        grid.add(r.name, *_cells(r))
    if any(_cells(r)[-1] for r in rows):
        grid.notes.append(lat.UNRELIABLE)
    return grid


def pair_grid(p: PairTraining, context: dict[str, Any]) -> Grid:
    grid = timing_grid([p.original, p.pair], context)
    gain = p.training_speedup
    said = {Verdict.TOO_CLOSE: " - too close to call (the IQRs overlap)", Verdict.SEPARABLE: " - separable wins",
            Verdict.ORIGINAL: " - separable LOSES"}.get(p.verdict, "") if p.verdict is not None else ""
    grid.notes.insert(0, f"separable training speedup (forward + backward): measured {speedup(gain)}{said}; "
                         f"MACs {speedup(p.training_mac_speedup)} (forward alone {speedup(p.mac_speedup)}); "
                         f"inference measured {speedup(p.inference_speedup)}; whole step {speedup(p.step_speedup)}")
    return grid


# ----------------------------------------------------------------------------------------------- network


def add_network(report: Report, study: NetworkStudy) -> None:
    assert study.training is not None
    tr, timed, context = study.training.training, study.training.timed, study.training.context
    data = tr.to_dict()
    _attach(report.records, tr.row_dicts())
    report.grids += [_rows_grid(tr, f"training: {study.meta['network']}, per layer",
                                only_weighted=not study.all_layers),
                     totals_grid(tr), memory_grid([("bytes", tr.memory)], tr.batch)]
    line = fit_line(tr.fit)
    if line:
        report.grids[-1].notes.insert(0, line)
    if timed is not None and context is not None:
        grid = timing_grid(list(timed), context, f"training, measured on {context['device']} (each weighted layer "
                                                 "on its own)")
        sums = [sum(t.forward.median or 0 for t in timed), sum(t.backward.median or 0 for t in timed)]
        grid.add("sum of the layers", seconds(sums[0]), seconds(sums[1]), "", "", "", end_section=True)
        report.grids.append(grid)
        data["timing"] = {**context, "rows": [t.to_dict() for t in timed], "forward_s": sums[0],
                          "forward_backward_s": sums[1]}
        by = {t.name: t.to_dict() for t in timed}
        for record in report.records:
            if record.get("name") in by:
                record.setdefault("training", {})["timing"] = by[record["name"]]
    report.data["training"] = data


# ----------------------------------------------------------------------------------------------- profile


def add_profile(report: Report, study: ModelStudy) -> None:
    assert study.training is not None
    traced = study.training.traced
    tr = traced.training
    data = tr.to_dict()
    data["peak_at"] = {"phase": traced.peak_phase, "module": traced.peak_module}
    rows = tr.row_dicts()
    used = _attach(report.records, rows)
    for r in tr.rows:  # modules the profile has no row for (activations that keep tensors): a row of their own
        if r.name not in used:
            report.records.append({"name": r.name, "kind": r.kind, "params": r.trainable + r.frozen,
                                   "macs": r.forward_macs, "flops": 2 * r.forward_macs, "training": rows[r.name]})
    mem = memory_grid([("bytes", tr.memory)], tr.batch)
    where = f" (in {traced.peak_module})" if traced.peak_module else ""
    mem.notes.insert(0, f"live tensors peaked during the {traced.peak_phase}{where}")
    line = fit_line(tr.fit, " (dim 0 of every input)")
    if line:
        mem.notes.insert(0, line)
    types = {n or "(model)": t for n, t in traced.types.items()}
    report.grids += [_rows_grid(tr, f"training: {study.target}, per module", types), totals_grid(tr), mem]
    t = study.training
    if t.per_layer is not None and t.whole is not None and t.context is not None:
        names = list(t.names)
        report.grids.append(_profile_timing_grid(list(t.per_layer), t.whole, t.context, names))
        data["timing"] = {**t.context, "end_to_end": t.whole.to_dict(),
                          "rows": [{"name": n, **p.to_dict()} for n, p in zip(names, t.per_layer)]}
        for record, timed in zip(_named(report.records, names), t.per_layer):
            if record is not None:
                record.setdefault("training", {})["timing"] = timed.to_record() if isinstance(timed, PairTraining) \
                    else timed.to_dict()
    report.data["training"] = data


def _named(records: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any] | None]:
    by = {r.get("name"): r for r in records}
    return [by.get(n) for n in names]


def _profile_timing_grid(per_layer: list[Any], whole: TrainingTiming, context: dict[str, Any],
                         names: list[str]) -> Grid:
    grid = Grid(title=f"training, measured on {context['device']}",
                columns=[name("layer"), Column("fwd + bwd"), Column("as separable"), Column("training"),
                         Column("MACs"), text("")],
                caption=lat.caption(context) + "; each conv trained on its own beside its separable pair "
                "(forward + backward); training: measured speedup; MACs: forward + backward MACs ratio")
    for n, p in zip(names, per_layer):
        if isinstance(p, PairTraining):
            grid.add(n, lat.measured_cell(p.original.backward), lat.measured_cell(p.pair.backward),
                     speedup(p.training_speedup), speedup(p.training_mac_speedup),
                     lat.quality_cell(p.original.backward) or lat.quality_cell(p.pair.backward))
        else:
            grid.add(n, lat.measured_cell(p.backward), "", "", "", lat.quality_cell(p.backward))
    grid.add("whole model: forward", lat.measured_cell(whole.forward), "", "", "", lat.quality_cell(whole.forward),
             end_section=True)
    grid.add("whole model: forward + backward", lat.measured_cell(whole.backward), "", "", "",
             lat.quality_cell(whole.backward))
    if whole.step is not None:
        grid.add("whole model: + optimizer step", lat.measured_cell(whole.step), "", "", "",
                 lat.quality_cell(whole.step))
    if any(row[-1] for row in grid.rows):
        grid.notes.append(lat.UNRELIABLE)
    return grid


# ----------------------------------------------------------------------------------------------- compare


def _side_by_side(title: str, names: tuple[str, str], a: T.Training, b: T.Training,
                  times: tuple[float | None, float | None] = (None, None)) -> Grid:
    grid = Grid(title=title, columns=[name(""), Column(names[0]), Column(names[1]), Column("ratio")])
    ta, tb = a.totals, b.totals
    for label_, key in (("forward MACs", "forward_macs"), ("backward MACs", "backward_macs"),
                        ("training MACs", "training_macs")):
        grid.add(label_, exact(ta[key]), exact(tb[key]), f"{tb[key] / ta[key]:.3f}" if ta[key] else "")
    for label_, x, y in (("saved activations", a.memory.saved, b.memory.saved),
                         ("peak memory", a.memory.peak, b.memory.peak)):
        grid.add(label_, size(x), size(y), f"{y / x:.3f}" if x else "")
    if times[0] is not None or times[1] is not None:
        grid.add("measured fwd + bwd", seconds(times[0]), seconds(times[1]),
                 f"{times[1] / times[0]:.3f}" if times[0] and times[1] else "")
    if a.fit is not None and b.fit is not None:
        grid.add(f"largest batch in {size(a.fit.limit)}", exact(a.fit.batch), exact(b.fit.batch),
                 f"{b.fit.batch / a.fit.batch:.3f}")
    return grid


def add_compare(report: Report, study: CompareStudy) -> None:
    """Both sides of a compare of networks or models, trained, side by side."""
    t = study.training
    assert t is not None and study.original is not None
    if study.of == "network":
        title = f"training: {study.original.name} vs {variant_title(study.as_)}"
        names = (study.original.name, f"as {study.as_}")
    else:
        label = "separable" if study.as_ is None else study.as_
        title = f"training: {study.target} vs " + ("its separable copy" if study.as_ is None
                                                    else variant_title(study.as_))
        names = (study.target, label)
    report.grids.append(_side_by_side(title, names, t.original, t.variant, t.times))
    _compare_data(report, t.original, t.variant, t.times)


def _compare_data(report: Report, a: T.Training, b: T.Training, times: tuple[float | None, float | None]) -> None:
    sides = []
    for tr, t in ((a, times[0]), (b, times[1])):
        sides.append({**tr.totals, "memory": tr.memory.to_dict(), "measured_forward_backward_s": t,
                      **({"fit": tr.fit.to_dict()} if tr.fit else {})})
        for record in report.records[len(sides) - 1:len(sides)]:  # CSV: the totals and the two memory figures
            record["training"] = {**tr.totals, "peak_bytes": tr.memory.peak, "saved_bytes": tr.memory.saved,
                                  "measured_forward_backward_s": t}
    report.data["training"] = {"optimizer": a.memory.optimizer, "dtype": a.memory.dtype,
                               "conventions": T.CONVENTIONS, "original": sides[0], "variant": sides[1]}


# ------------------------------------------------------------------------------------------------- sweep


def add_sweep(report: Report, study: SweepStudy) -> None:
    """Every config of a sweep, trained: forward + backward MACs of the standard conv and of its pair, and (when
    measured) the measured training speedup beside the MAC ratio and the inference speedup."""
    assert study.training is not None
    grid = Grid(title=f"training: separable vs standard on {study.context.get('device', '')}",
                columns=[name("cin->cout"), Column("k"), Column("size"), Column("batch"), Column("dtype", "left"),
                         Column("MACs"), Column("inference"), Column("training"), text("winner")],
                caption="speedup = standard / separable (> 1: separable is faster); MACs: forward + backward MACs "
                        "ratio; inference and training: measured (training = forward + backward)")
    configs = []
    for row, record, (one, two, mac_gain, timed) in zip(study.configs, report.records, study.training.configs):
        keys: dict[str, Any] = {"training_macs": one.totals["training_macs"],
                                "separable_training_macs": two.totals["training_macs"],
                                "training_mac_speedup": mac_gain}
        if timed is not None:
            keys.update({"training_measured_speedup": timed.training_speedup, "training_verdict": timed.verdict_text,
                         "standard_training_s": timed.original.backward.median,
                         "separable_training_s": timed.pair.backward.median,
                         "training_reliable": timed.original.backward.reliable and timed.pair.backward.reliable})
        record.update(keys)
        configs.append({**keys, "name": record["name"]})
        winner = "-"
        if timed is not None and timed.training_speedup is not None:
            winner = "too close" if timed.verdict is Verdict.TOO_CLOSE else "separable" \
                if timed.training_speedup > 1 else "standard"
            if not keys["training_reliable"]:
                winner += " noisy"
        grid.add(f"{row.cin}->{row.cout}", str(row.k), f"{row.size}x{row.size}", str(row.batch),
                 row.dtype + (" cl" if row.channels_last else ""), speedup(mac_gain),
                 speedup(row.pair.measured_speedup), speedup(keys.get("training_measured_speedup")), winner)
    report.grids.append(grid)
    report.data["training"] = {"optimizer": study.training.options.optimizer, "conventions": T.CONVENTIONS,
                               "configs": configs}

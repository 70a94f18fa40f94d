"""Per-module rows from a trace: ops grouped by the module that issued them (collapsed to --depth), totals, totals
by op kind, bytes and activation memory at a dtype, and the separable what-if (`cost.kinds.separable_of`, the one
rule). No torch: ONNX and Keras traces go through here too."""

from __future__ import annotations

import re
from typing import Any

from dscalc.cost.dtypes import itemsize
from dscalc.cost.kinds import separable_of
from dscalc.cost.opkinds import MAC_KINDS, NORM_KINDS, OP_KINDS, WHY_NOT_COUNTED
from dscalc.trace.records import OpRecord, ProfileResult, ProfileRow, Size, Trace

#: module types whose `weight` is a conv/linear weight (the MobileNets paper's "parameters")
_WEIGHTED = re.compile(r"Conv|Linear")


def _group(name: str, depth: int | None) -> str:
    if depth is None or not name:
        return name
    return ".".join(name.split(".")[:depth])


def _in_group(name: str, group: str, depth: int | None) -> bool:
    return name == group if depth is None else _group(name, depth) == group


def summarize(tr: Trace, depth: int | None = None, dtype: str = "float32") -> ProfileResult:
    """Per-module rows (collapsed to `depth` path components), totals, totals by op kind and memory at `dtype`."""
    width = itemsize(dtype)
    groups: dict[tuple[str, int], list[OpRecord]] = {}
    every: dict[tuple[str, int], list[OpRecord]] = {}
    for rec in tr.records:
        group = _group(rec.module, depth)
        key = (group, dict(rec.calls).get(group, 0)) if rec.calls else (group, 0)
        every.setdefault(key, []).append(rec)
        if rec.kind in MAC_KINDS or rec.kind in NORM_KINDS:
            groups.setdefault(key, []).append(rec)
    for name, count in tr.module_params.items():
        if count:
            groups.setdefault((_group(name, depth), 0), [])
    weights_of, bias_of = _weights_and_bias(tr)
    rows = []
    for (name, call), recs in groups.items():
        first = call == 0  # a module's parameters are counted in the row of its first call
        params = sum(c for n, c in tr.module_params.items() if _in_group(n, name, depth)) if first else 0
        macs = sum(r.macs for r in recs)
        convs = [r.layer for r in recs if r.layer is not None]
        kinds = {r.kind for r in recs}
        layer = None
        io = _io(tr, name, call, recs)
        if len(convs) == 1 and len(recs) == 1:
            layer = convs[0]
            kind = layer.kind
            io = io if io != ((), ()) else (layer.input_shape, layer.output_shape)
            geometry = layer.geometry()
        else:
            kind = kinds.pop() if len(kinds) == 1 else ("module" if kinds else "params")
            geometry = ""
            if name in tr.module_kinds and recs:  # what the module is (an LSTM's row is recurrent at any depth)
                kind = tr.module_kinds[name]
        separable = None
        pairs = [(c, separable_of(c)) for c in convs]
        if any(s is not None for _, s in pairs):
            separable = {
                "params": sum((s.params if s else c.params) for c, s in pairs),
                "macs": macs - sum(c.macs for c in convs) + sum((s.macs if s else c.macs) for c, s in pairs),
            }
        ops = every.get((name, call), [])
        moved = sum((r.reads + r.writes for r in ops), Size())
        written = sum((r.writes for r in ops), Size())
        rows.append(ProfileRow(
            _row_name(name, call), tr.module_types.get(name, "group"), kind, params, macs, io[0], io[1], geometry,
            separable,
            weights=sum(v for n, v in weights_of.items() if _in_group(n, name, depth)) if first else 0,
            bias=sum(v for n, v in bias_of.items() if _in_group(n, name, depth)) if first else 0,
            bytes=moved.bytes(dtype), activation_bytes=written.bytes(dtype), bias_adds=sum(r.bias_adds for r in recs),
            layer=layer, dtype=next((r.mac_dtype for r in recs if r.mac_dtype), "")))
    by_kind = {k: {"ops": 0, "macs": 0, "elements": 0} for k in OP_KINDS}
    for rec in tr.records:
        slot = by_kind[rec.kind]
        slot["ops"] += 1
        slot["macs"] += rec.macs
        slot["elements"] += rec.elements
    macs = sum(by_kind[k]["macs"] for k in MAC_KINDS)
    moved = sum((r.reads + r.writes for r in tr.records), Size())
    written = sum((r.writes for r in tr.records), Size())
    totals = {"params": tr.params, "macs": macs, "flops": 2 * macs,
              "conv_macs": by_kind["conv"]["macs"],
              "linear_macs": sum(by_kind[k]["macs"] for k in MAC_KINDS if k != "conv"),
              "bias_adds": sum(r.bias_adds for r in tr.records),
              "weights": sum(weights_of.values()), "bias": sum(bias_of.values()),
              "buffers": tr.buffer_count,
              "bytes": moved.bytes(dtype)}
    int8 = sum(r.macs for r in tr.records if r.mac_dtype == "int8")
    if int8:
        totals["int8_macs"] = int8
    if tr.quantized_params:
        totals["quantized_params"] = tr.quantized_params
    what_if = [r.separable["macs"] if r.separable else r.macs for r in rows]
    if any(r.separable for r in rows):
        totals["separable_macs"] = sum(what_if) + macs - sum(r.macs for r in rows)
    peak = tr.peak.get(width, 0)
    memory = {"weights": tr.weights.bytes(dtype), "buffers": tr.buffers.bytes(dtype), "inputs": tr.inputs.bytes(dtype),
              "activations": written.bytes(dtype), "peak_activations": peak}
    memory["total"] = memory["weights"] + memory["buffers"] + memory["inputs"] + peak
    layers = [r.layer for r in tr.records if r.layer is not None]
    notes = list(tr.notes)
    why: dict[str, list[str]] = {}
    for op in sorted(tr.uncounted):
        if op in WHY_NOT_COUNTED:
            why.setdefault(WHY_NOT_COUNTED[op], []).append(op)
    notes += [f"not counted, by convention: {', '.join(ops)} - {reason}" for reason, ops in why.items()]
    return ProfileResult(rows, totals, {k: v for k, v in by_kind.items() if v["ops"]}, dict(tr.uncounted),
                         tr.input_shapes, tr.output_shapes, layers, memory=memory, notes=notes, dtype=dtype,
                         ops=list(tr.records), copies=list(tr.copies), depth=depth)


def _row_name(name: str, call: int) -> str:
    """'(model)' for the model itself; a module's second call is 'name (call 2)'."""
    shown = name or "(model)"
    return shown if call == 0 else f"{shown} (call {call + 1})"


def _io(tr: Trace, name: str, call: int, recs: list[OpRecord]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A row's input -> output shapes: its module's, as its hooks saw that call (torchinfo's convention), or else
    (a graph's node, a group, a functional call on a module's weights) its first op's input and last op's output."""
    calls = tr.module_io.get(name)
    if calls and call < len(calls) and calls[call][0] and calls[call][1]:
        return calls[call]
    shaped = [r for r in recs if r.io]
    if shaped:
        return shaped[0].io[0], shaped[-1].io[1]
    return (), ()


def _weights_and_bias(tr: Trace) -> tuple[dict[str, int], dict[str, int]]:
    """Conv/linear weights and biases per module, from the names of its parameters and its type."""
    weights: dict[str, int] = {}
    bias: dict[str, int] = {}
    for module, kind, count in tr.param_roles:
        if not _WEIGHTED.search(tr.module_types.get(module, "")):
            continue
        target = weights if kind == "weight" else bias if kind == "bias" else None
        if target is not None:
            target[module] = target.get(module, 0) + count
    return weights, bias


__all__: list[Any] = ["summarize", "MAC_KINDS", "OP_KINDS"]

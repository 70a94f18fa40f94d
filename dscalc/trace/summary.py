"""Per-module rows from a trace: ops grouped by the module that issued them (collapsed to --depth), totals, totals
by op kind and the separable what-if (`cost.kinds.separable_of`, the one rule). No torch: ONNX and Keras traces
go through here too."""

from __future__ import annotations

from typing import Any

from dscalc.cost.kinds import separable_of
from dscalc.trace.records import ProfileResult, ProfileRow, Trace

MAC_KINDS = ("conv", "linear", "matmul")
OP_KINDS = ("conv", "linear", "matmul", "batchnorm", "pooling", "elementwise", "other")


def _group(name: str, depth: int | None) -> str:
    if depth is None or not name:
        return name
    return ".".join(name.split(".")[:depth])


def summarize(tr: Trace, depth: int | None = None) -> ProfileResult:
    """Per-module rows (collapsed to `depth` path components), totals and totals by op kind."""
    groups: dict[str, list[Any]] = {}
    for rec in tr.records:
        if rec.kind in MAC_KINDS or rec.kind == "batchnorm":
            groups.setdefault(_group(rec.module, depth), []).append(rec)
    for name, count in tr.module_params.items():
        if count:
            groups.setdefault(_group(name, depth), [])
    rows = []
    for name, recs in groups.items():
        params = sum(c for n, c in tr.module_params.items()
                     if (n == name if depth is None else _group(n, depth) == name))
        macs = sum(r.macs for r in recs)
        convs = [r.layer for r in recs if r.layer is not None]
        kinds = {r.kind for r in recs}
        if len(convs) == 1 and len(recs) == 1:
            layer = convs[0]
            kind, io = layer.kind, (layer.input_shape, layer.output_shape)
            geometry = layer.geometry()
        else:
            kind = kinds.pop() if len(kinds) == 1 else ("module" if kinds else "params")
            io, geometry = ((), ()), ""
        separable = None
        pairs = [(c, separable_of(c)) for c in convs]
        if any(s is not None for _, s in pairs):
            separable = {
                "params": sum((s.params if s else c.params) for c, s in pairs),
                "macs": macs - sum(c.macs for c in convs) + sum((s.macs if s else c.macs) for c, s in pairs),
            }
        rows.append(ProfileRow(name or "(model)", tr.module_types.get(name, "group"), kind, params, macs,
                               io[0], io[1], geometry, separable))
    by_kind = {k: {"ops": 0, "macs": 0, "elements": 0} for k in OP_KINDS}
    for rec in tr.records:
        slot = by_kind[rec.kind]
        slot["ops"] += 1
        slot["macs"] += rec.macs
        slot["elements"] += rec.elements
    macs = sum(by_kind[k]["macs"] for k in MAC_KINDS)
    totals = {"params": tr.params, "macs": macs, "flops": 2 * macs,
              "conv_macs": by_kind["conv"]["macs"],
              "linear_macs": by_kind["linear"]["macs"] + by_kind["matmul"]["macs"]}
    what_if = [r.separable["macs"] if r.separable else r.macs for r in rows]
    if any(r.separable for r in rows):
        totals["separable_macs"] = sum(what_if) + macs - sum(r.macs for r in rows)
    layers = [r.layer for r in tr.records if r.layer is not None]
    return ProfileResult(rows, totals, {k: v for k, v in by_kind.items() if v["ops"]}, dict(tr.uncounted),
                         tr.input_shapes, tr.output_shapes, layers)

"""Profile a PyTorch model: trace it on the meta device, group the ops per module, add the separable what-if,
and optionally check every layer against fvcore. Returns records; rendering is in dscalc.views.

    >>> import torch, dscalc.profile as P
    >>> result = P.profile_model(torch.nn.Conv2d(64, 128, 3, padding=1), [(1, 64, 56, 56)])
    >>> result.totals["macs"]
    231211008
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from dscalc.layers import separable_of
from dscalc.trace import Trace, trace

MAC_KINDS = ("conv", "linear", "matmul")
OP_KINDS = ("conv", "linear", "matmul", "batchnorm", "pooling", "elementwise", "other")


@dataclass
class ProfileRow:
    name: str
    type: str
    kind: str
    params: int
    macs: int
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    geometry: str = ""
    separable: dict[str, int] | None = None  # what-if params/macs, for standard convs with k > 1
    fvcore: int | None = None
    fvcore_ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "type": self.type, "kind": self.kind, "params": self.params,
                               "macs": self.macs, "flops": 2 * self.macs,
                               "input_shape": list(self.input_shape), "output_shape": list(self.output_shape)}
        if self.geometry:
            row["geometry"] = self.geometry
        if self.separable is not None:
            row["separable"] = self.separable
        if self.fvcore is not None:
            row["fvcore"] = self.fvcore
        return row


@dataclass
class ProfileResult:
    rows: list[ProfileRow]
    totals: dict[str, int]
    by_op_kind: dict[str, dict[str, int]]
    uncounted: dict[str, int]
    inputs: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    layers: list[Any] = field(default_factory=list)  # LayerCost of every traced convolution, in order
    fvcore: dict[str, Any] | None = None


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


def profile_model(model: torch.nn.Module, input_shapes: list[tuple[int, ...]], depth: int | None = None,
                  dtype: torch.dtype = torch.float32) -> ProfileResult:
    """Profile a live model (any device) on meta copies of its tensors; the model itself is not touched."""
    return summarize(trace(model, input_shapes, dtype), depth)


#: above this many parameter bytes, --check fvcore does not materialize the model on the CPU
FVCORE_MAX_BYTES = 2 * 1024**3


def check_fvcore(result: ProfileResult, build_cpu_model: Any) -> None:
    """Run fvcore's FlopCountAnalysis on a CPU copy and attach its counts per row and per operator."""
    params = result.totals["params"]
    if params * 4 > FVCORE_MAX_BYTES:
        result.fvcore = {"skipped": f"the model has {params:,} parameters ({params * 4 / 2**30:.1f} GiB in fp32): "
                                    f"too large to materialize on the CPU for fvcore"}
        return
    import warnings

    model = build_cpu_model()
    inputs = tuple(torch.zeros(s) for s in result.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_module = analysis.by_module()
        by_module_op = analysis.by_module_and_operator()
        total = int(analysis.total())
        by_op = {k: int(v) for k, v in analysis.by_operator().items()}
    for row in result.rows:
        key = "" if row.name == "(model)" else row.name
        if key in by_module:
            row.fvcore = int(by_module[key])
            row.fvcore_ops = {k: int(v) for k, v in by_module_op.get(key, {}).items()}
    result.fvcore = {"total": total, "by_operator": by_op}


FVCORE_SHORT = {"batch_norm": "bn", "adaptive_avg_pool2d": "pool", "upsample_nearest2d": "upsample"}
#: fvcore's operator names for what dscalc counts as MACs (conv, linear, matmul)
FVCORE_MAC_OPS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum"})


def fvcore_extra(fvcore_ops: dict[str, int]) -> dict[str, int]:
    """The operators fvcore counts that are not conv/linear/matmul MACs (BatchNorm, pooling, ...)."""
    return {k: v for k, v in fvcore_ops.items() if k not in FVCORE_MAC_OPS}


def explain(fvcore_ops: dict[str, int]) -> str:
    """Why fvcore's count differs, in short: the extra operators it counts."""
    return "+".join(sorted(FVCORE_SHORT.get(k, k) for k in fvcore_extra(fvcore_ops))) or "other ops"

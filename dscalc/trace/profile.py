"""Profile a PyTorch model: trace it on the meta device, summarize per module, and optionally check every layer
against fvcore. Returns records; rendering is in dscalc.report.

    >>> import torch
    >>> from dscalc.trace.profile import profile_model
    >>> result = profile_model(torch.nn.Conv2d(64, 128, 3, padding=1), [(1, 64, 56, 56)])
    >>> result.totals["macs"]
    231211008
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from dscalc.trace.records import ProfileResult
from dscalc.trace.summary import summarize
from dscalc.trace.tracer import trace


def profile_model(model: Any, input_shapes: list[tuple[int, ...]], depth: int | None = None,
                  dtype: str = "float32", build_cpu: Callable[[], Any] | None = None) -> ProfileResult:
    """Profile a model - an eager module on any device, a TorchScript module, an ExportedProgram or its
    `.module()` - on meta copies of its tensors; bytes and memory are counted at `dtype`. A model the meta device
    cannot run is run for real on the CPU: a copy of it, or the model `build_cpu()` builds (random weights) when
    it lives on the meta device. The model itself is not touched, whatever mode the caller is in."""
    if isinstance(dtype, torch.dtype):  # the API once took a torch dtype
        dtype = str(dtype).replace("torch.", "")
    return summarize(trace(model, input_shapes, torch.float32, build_cpu), depth, dtype)


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
    unsupported = {key: dict(analysis.unsupported_ops(key)) for key in by_module}
    own = result.depth is None
    calls: dict[str, list[Any]] = {}
    for row in result.rows:
        calls.setdefault(row.name.split(" (call ")[0], []).append(row)
    for base, rows in calls.items():
        key = "" if base == "(model)" else base
        if key not in by_module or len(rows) > 1:
            continue  # (a module called twice: fvcore counts its calls together, dscalc has one row per call)
        row = rows[0]
        counted = {op: int(v) for op, v in by_module_op.get(key, {}).items()}
        skipped_ops = {op: int(v) for op, v in unsupported.get(key, {}).items()}
        fv = int(by_module[key])
        if own or not key:  # the row is the module's own ops: fvcore's counts of its children come off
            for child in _children(key, by_module):
                fv -= int(by_module[child])
                for op, v in by_module_op.get(child, {}).items():
                    counted[op] = counted.get(op, 0) - int(v)
                for op, n in unsupported.get(child, {}).items():
                    skipped_ops[op] = skipped_ops.get(op, 0) - int(n)
        row.fvcore = fv
        row.fvcore_ops = {k: v for k, v in counted.items() if v}
        row.fvcore_diff = decompose(row.macs, row.fvcore_ops,
                                    [op for op, n in skipped_ops.items() if n > 0])
    result.fvcore = {"total": total, "by_operator": by_op}


def _children(key: str, modules: Any) -> list[str]:
    """The direct children of module `key` among fvcore's module names."""
    prefix = f"{key}." if key else ""
    return [k for k in modules if k and k != key and k.startswith(prefix) and "." not in k[len(prefix):]]


#: the ops fvcore lists as unsupported that do multiply-adds dscalc counts (attention, recurrent, bilinear, ...)
_MAC_BEARING = re.compile(r"attention|lstm|gru|rnn|bilinear|trilinear|bmm|addmv|\bmv\b|\bdot\b|conv|linear|matmul|mm")


def decompose(macs: int, fvcore_ops: dict[str, int], unsupported: list[str]) -> dict[str, dict[str, int]]:
    """fvcore's count minus dscalc's, split into what fvcore skips (ops it lists as unsupported that dscalc counts:
    dscalc's MACs less fvcore's on its conv/linear/matmul operators) and what fvcore adds (the operators it counts
    that are not multiply-adds by dscalc's convention: norms, pooling, upsampling). `added - skipped` is exactly
    the difference. A negative skip (fvcore counts more on its product operators) is listed as added."""
    products = sum(v for k, v in fvcore_ops.items() if k in FVCORE_MAC_OPS)
    added = {k: v for k, v in fvcore_ops.items() if k not in FVCORE_MAC_OPS and v}
    skipped: dict[str, int] = {}
    missing = macs - products
    names = sorted(op.split("::")[-1] for op in unsupported if _MAC_BEARING.search(op.split("::")[-1]))
    if missing > 0:
        skipped["+".join(names) or "ops fvcore does not count"] = missing
    elif missing < 0:
        ops = sorted(k for k, v in fvcore_ops.items() if k in FVCORE_MAC_OPS and v)
        added[f"{'+'.join(ops)} (counted differently)"] = -missing
    return {"skipped": skipped, "added": added}


def label(diff: dict[str, dict[str, int]]) -> str:
    """The causes of a difference, the larger first: 'skips scaled_dot_product_attention -301,989,888; adds
    layer_norm +11,796,480'."""
    parts = [(v, f"skips {FVCORE_SHORT.get(k, k)} -{v:,}") for k, v in diff.get("skipped", {}).items()]
    parts += [(v, f"adds {FVCORE_SHORT.get(k, k)} +{v:,}") for k, v in diff.get("added", {}).items()]
    return "; ".join(text for _, text in sorted(parts, key=lambda p: -p[0])) or "other ops"


FVCORE_SHORT = {"batch_norm": "bn", "adaptive_avg_pool2d": "pool", "upsample_nearest2d": "upsample"}
#: fvcore's operator names for what dscalc counts as MACs (conv, linear, matmul)
FVCORE_MAC_OPS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum"})


def fvcore_extra(fvcore_ops: dict[str, int]) -> dict[str, int]:
    """The operators fvcore counts that are not conv/linear/matmul MACs (BatchNorm, pooling, ...)."""
    return {k: v for k, v in fvcore_ops.items() if k not in FVCORE_MAC_OPS}


def explain(fvcore_ops: dict[str, int]) -> str:
    """Why fvcore's count differs, in short: the extra operators it counts."""
    return "+".join(sorted(FVCORE_SHORT.get(k, k) for k in fvcore_extra(fvcore_ops))) or "other ops"

"""Profile a PyTorch model: trace it on the meta device, summarize per module, and optionally check every layer
against fvcore. Returns records; rendering is in dscalc.report.

    >>> import torch
    >>> from dscalc.trace.profile import profile_model
    >>> result = profile_model(torch.nn.Conv2d(64, 128, 3, padding=1), [(1, 64, 56, 56)])
    >>> result.totals["macs"]
    231211008
"""

from __future__ import annotations

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

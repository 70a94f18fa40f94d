"""Trace a PyTorch model per layer without its weights: a dispatch mode records every aten op with
its shapes and the module that issued it; the op registry turns conv/matmul ops into exact MACs.

The model is never changed: it runs through torch.func.functional_call on meta copies of its
parameters and buffers, and the module hooks that attribute ops live only inside `_module_stack()`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dscalc.errors import BadInput, RuntimeFailure
from dscalc.layers import conv
from dscalc.records import LayerCost

aten = torch.ops.aten


@dataclass
class OpRecord:
    """One aten op as the model ran it."""

    module: str  # path of the innermost module that issued it ("" = the model itself)
    op: str
    kind: str  # conv | linear | matmul | batchnorm | pooling | elementwise | other
    macs: int
    elements: int  # output elements
    layer: LayerCost | None = None  # a convolution's record (so its separable what-if is one call away)


@dataclass
class OpHandler:
    kind: str
    macs: Callable[[tuple, dict, Any], int | LayerCost] | None = None  # MACs, or a conv's full record


REGISTRY: dict[Any, OpHandler] = {}


def register(*ops: Any, kind: str) -> Callable:
    """Decorator: the MAC count of these aten ops. Registering an op twice is an error."""

    def wrap(fn: Callable | None) -> Callable | None:
        for op in ops:
            if op in REGISTRY:
                raise RuntimeError(f"{op} is registered twice")
            REGISTRY[op] = OpHandler(kind, fn)
        return fn

    return wrap


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


@register(aten.convolution.default, aten._convolution.default, kind="conv")
def _conv(args: tuple, kwargs: dict, out: Any) -> LayerCost:
    """The engine's cost of a traced convolution: its MACs, and a record `separable_of` understands."""
    x, w, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    xs, ws = _shape(x), _shape(w)
    if len(xs) == len(ws) - 1:  # unbatched input
        xs = (1, *xs)
    cout = ws[1] * groups if transposed else ws[0]
    return conv(xs[1], cout, ws[2:], xs[2:], batch=xs[0], stride=tuple(stride), padding=tuple(padding),
                dilation=tuple(dilation), groups=int(groups), bias=bias is not None, transposed=bool(transposed),
                output_padding=tuple(output_padding) if transposed else 0)


@register(aten.mm.default, kind="matmul")
def _mm(args: tuple, kwargs: dict, out: Any) -> int:
    (m, k), (_, n) = _shape(args[0]), _shape(args[1])
    return m * k * n


@register(aten.addmm.default, kind="linear")
def _addmm(args: tuple, kwargs: dict, out: Any) -> int:
    (m, k), (_, n) = _shape(args[1]), _shape(args[2])
    return m * k * n


@register(aten.bmm.default, kind="matmul")
def _bmm(args: tuple, kwargs: dict, out: Any) -> int:
    (b, m, k), (_, _, n) = _shape(args[0]), _shape(args[1])
    return b * m * k * n


@register(aten.baddbmm.default, kind="matmul")
def _baddbmm(args: tuple, kwargs: dict, out: Any) -> int:
    (b, m, k), (_, _, n) = _shape(args[1]), _shape(args[2])
    return b * m * k * n


def _sdpa(args: tuple, kwargs: dict, out: Any) -> int:
    """Attention: Q K^T (L x S x E per head) and the weighted sum of V (L x S x Ev per head)."""
    q, k, v = _shape(args[0]), _shape(args[1]), _shape(args[2])
    heads = math.prod(q[:-2])
    return heads * q[-2] * k[-2] * (q[-1] + v[-1])


for _name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
              "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"):
    if hasattr(aten, _name):  # which fused kernels exist depends on the torch build
        register(getattr(aten, _name).default, kind="matmul")(_sdpa)


register(aten._native_batch_norm_legit_no_training.default, aten._native_batch_norm_legit.default,
         aten.native_batch_norm.default, aten._native_batch_norm_legit_functional.default,
         aten.native_layer_norm.default, aten.native_group_norm.default, kind="batchnorm")(None)
register(aten.max_pool2d_with_indices.default, aten.avg_pool2d.default, aten._adaptive_avg_pool2d.default,
         aten.max_pool3d_with_indices.default, aten.avg_pool3d.default, aten._adaptive_avg_pool3d.default,
         aten.adaptive_max_pool2d.default, aten.mean.dim, kind="pooling")(None)
register(aten.add.Tensor, aten.add_.Tensor, aten.mul.Tensor, aten.mul_.Tensor, aten.relu.default,
         aten.relu_.default, aten.hardtanh.default, aten.hardtanh_.default, aten.sigmoid.default,
         aten.hardswish.default, aten.hardswish_.default, aten.hardsigmoid.default, aten.silu.default,
         aten.silu_.default, aten.gelu.default, aten.clamp_min.default, aten.div.Tensor, aten.sub.Tensor,
         aten._softmax.default, aten.tanh.default, aten.mul.Scalar, aten.add.Scalar, aten.div.Scalar,
         aten.sub.Scalar, aten._safe_softmax.default, aten.masked_fill.Scalar, aten.exp.default, aten.rsqrt.default,
         aten.sqrt.default, aten.pow.Tensor_Scalar, aten.neg.default, aten.where.self, aten.eq.Scalar, aten.ne.Scalar,
         aten.gelu_.default if hasattr(aten, "gelu_") else aten.erf.default, kind="elementwise")(None)

#: ops that move or reshape data and compute nothing: not listed as uncounted
SHAPE_OPS = {
    "view", "_unsafe_view", "reshape", "flatten", "t", "transpose", "permute", "expand", "clone", "cat",
    "split", "split_with_sizes", "slice", "select", "unsqueeze", "squeeze", "detach", "alias", "_to_copy",
    "copy_", "empty", "zeros", "ones", "constant_pad_nd", "contiguous", "chunk", "stack", "unbind", "native_dropout",
    "dropout", "empty_like", "zeros_like", "ones_like", "new_empty", "new_zeros", "lift_fresh", "as_strided",
    "fill_", "zero_", "_reshape_alias", "narrow", "index", "roll", "pad", "channel_shuffle", "pixel_shuffle",
    "flip", "arange", "full", "repeat", "_log_softmax", "t_", "view_as", "detach_",
}


class _Recorder(TorchDispatchMode):
    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.records: list[OpRecord] = []
        self.uncounted: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        handler = REGISTRY.get(func)
        first = out[0] if isinstance(out, (tuple, list)) else out
        elements = math.prod(first.shape) if isinstance(first, torch.Tensor) else 0
        module = self.stack[-1] if self.stack else ""
        if handler is not None:
            counted = handler.macs(args, kwargs, first) if handler.macs else 0
            if isinstance(counted, LayerCost):  # a convolution: the engine's record, named after its module
                layer = replace(counted, name=module or "conv")
                self.records.append(OpRecord(module, func.__name__, handler.kind, layer.macs, elements, layer))
            else:
                self.records.append(OpRecord(module, func.__name__, handler.kind, counted, elements))
        else:
            name = func.__name__.split(".")[0]
            if name not in SHAPE_OPS:
                self.uncounted[name] = self.uncounted.get(name, 0) + 1
                self.records.append(OpRecord(module, func.__name__, "other", 0, elements))
        return out


@contextlib.contextmanager
def _module_stack(model: torch.nn.Module) -> Iterator[list[str]]:
    """Global forward hooks that keep the path of the running module; removed on exit, whatever happens."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[str] = []

    def pre(module: torch.nn.Module, inputs: Any) -> None:
        stack.append(names.get(id(module), stack[-1] if stack else ""))

    def post(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if stack:
            stack.pop()

    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


@dataclass
class Trace:
    """What one forward pass did: every counted op, and the names of ops that were not counted."""

    records: list[OpRecord]
    uncounted: dict[str, int]
    module_types: dict[str, str]
    module_params: dict[str, int]  # own parameters of each module (not its children's)
    params: int
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)


def trace(model: torch.nn.Module, input_shapes: list[tuple[int, ...]], dtype: torch.dtype = torch.float32) -> Trace:
    """Run `model` once on meta tensors of these shapes and record every op. The model is not modified."""
    from torch.func import functional_call

    scripted = isinstance(model, torch.jit.ScriptModule)  # TorchScript: no stateless call, no module hooks
    device = "cpu" if scripted else "meta"
    state = {n: torch.empty_like(t, device="meta") for n, t in
             [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
    inputs = [torch.zeros(s, dtype=dtype, device=device) for s in input_shapes]
    with _module_stack(model) as stack:
        recorder = _Recorder(stack)
        try:
            with torch.no_grad(), recorder:
                if scripted:
                    out = model(*inputs)
                else:
                    out = functional_call(model, state, tuple(inputs), tie_weights=True, strict=False)
        except BadInput:
            raise
        except Exception as e:  # the user's forward raised: name the module it was in
            path = stack[-1] if stack else ""
            culprit = model.get_submodule(path) if path else model
            where = f" in module '{path}' ({type(culprit).__name__})" if path else f" in {type(model).__name__}.forward"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeFailure(f"the model's forward raised{where}: {type(e).__name__}: {first}") from None
    outs = out if isinstance(out, (tuple, list)) else [out]
    return Trace(
        records=recorder.records,
        uncounted=recorder.uncounted,
        module_types={n: type(m).__name__ for n, m in model.named_modules()},
        module_params={n: sum(p.numel() for p in m.parameters(recurse=False)) for n, m in model.named_modules()},
        params=sum(p.numel() for p in model.parameters()),
        input_shapes=[tuple(s) for s in input_shapes],
        output_shapes=[_shape(o) for o in outs if isinstance(o, torch.Tensor)],
    )

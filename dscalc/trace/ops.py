"""The aten op registry: each op that multiplies and accumulates declares its MAC count here (a convolution
declares its engine record); ops that only move data are named so they are not reported as uncounted.
Registering an op twice is an error."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dscalc.cost.layers import conv
from dscalc.cost.records import LayerCost

aten = torch.ops.aten


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


def shape_of(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


@register(aten.convolution.default, aten._convolution.default, kind="conv")
def _conv(args: tuple, kwargs: dict, out: Any) -> LayerCost:
    """The engine's cost of a traced convolution: its MACs, and a record `separable_of` understands."""
    x, w, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    xs, ws = shape_of(x), shape_of(w)
    if len(xs) == len(ws) - 1:  # unbatched input
        xs = (1, *xs)
    cout = ws[1] * groups if transposed else ws[0]
    return conv(xs[1], cout, ws[2:], xs[2:], batch=xs[0], stride=tuple(stride), padding=tuple(padding),
                dilation=tuple(dilation), groups=int(groups), bias=bias is not None, transposed=bool(transposed),
                output_padding=tuple(output_padding) if transposed else 0)


@register(aten.mm.default, kind="matmul")
def _mm(args: tuple, kwargs: dict, out: Any) -> int:
    (m, k), (_, n) = shape_of(args[0]), shape_of(args[1])
    return m * k * n


@register(aten.addmm.default, kind="linear")
def _addmm(args: tuple, kwargs: dict, out: Any) -> int:
    (m, k), (_, n) = shape_of(args[1]), shape_of(args[2])
    return m * k * n


@register(aten.bmm.default, kind="matmul")
def _bmm(args: tuple, kwargs: dict, out: Any) -> int:
    (b, m, k), (_, _, n) = shape_of(args[0]), shape_of(args[1])
    return b * m * k * n


@register(aten.baddbmm.default, kind="matmul")
def _baddbmm(args: tuple, kwargs: dict, out: Any) -> int:
    (b, m, k), (_, _, n) = shape_of(args[1]), shape_of(args[2])
    return b * m * k * n


def _sdpa(args: tuple, kwargs: dict, out: Any) -> int:
    """Attention: Q K^T (L x S x E per head) and the weighted sum of V (L x S x Ev per head)."""
    q, k, v = shape_of(args[0]), shape_of(args[1]), shape_of(args[2])
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

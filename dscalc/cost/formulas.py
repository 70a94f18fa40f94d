"""Closed-form costs of convolution and linear layers: pure functions of ints and tuples.

No torch, no floats in a count. Every cost is derived from the weight shape, so grouped and
depthwise convolutions need no special branch:

* convolution weight:            (C_out, C_in / groups, *kernel)
* transposed convolution weight: (C_in, C_out / groups, *kernel)   (PyTorch's layout)
* linear weight:                 (out_features, in_features)

Conventions (see README): one MAC is one multiply-accumulate; FLOPs = 2 x MACs; bias additions
are not MACs (MobileNets paper, torchvision ``_ops``, fvcore).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import prod

__all__ = [
    "conv_output_length",
    "transposed_output_length",
    "same_padding",
    "transposed_same_padding",
    "conv_weight_shape",
    "transposed_weight_shape",
    "conv_macs",
    "transposed_conv_macs",
    "linear_macs",
    "numel",
    "flops",
    "separable_ratio",
]


def conv_output_length(size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    """Output length of a convolution: floor((in + p_before + p_after - d(k-1) - 1) / s) + 1."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def transposed_output_length(
    size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int, output_padding: int
) -> int:
    """Output length of a transposed convolution: (in-1)s - p_before - p_after + d(k-1) + output_padding + 1."""
    return (size - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + output_padding + 1


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras/TF 'same' padding (before, after) so that out = ceil(in / s); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def transposed_same_padding(kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras 'same' for a transposed conv (out = in * s): crop max(d(k-1)+1 - s, 0), the odd pixel after - the
    adjoint of the forward 'same' conv from out to in, as Keras computes it (Conv2DTranspose(1, 3, strides=2,
    padding='same') on [1, 2, 3] with kernel [1, 10, 100] gives [1, 10, 102, 20, 203, 30]: the scatter
    [1, 10, 102, 20, 203, 30, 300] cropped by (0, 1))."""
    total = max(dilation * (kernel - 1) + 1 - stride, 0)
    return total // 2, total - total // 2


def conv_weight_shape(in_channels: int, out_channels: int, kernel: Sequence[int], groups: int) -> tuple[int, ...]:
    """Weight shape of a convolution: (C_out, C_in / groups, *kernel)."""
    return (out_channels, in_channels // groups, *kernel)


def transposed_weight_shape(
    in_channels: int, out_channels: int, kernel: Sequence[int], groups: int
) -> tuple[int, ...]:
    """Weight shape of a transposed convolution: (C_in, C_out / groups, *kernel)."""
    return (in_channels, out_channels // groups, *kernel)


def conv_macs(weight_shape: Sequence[int], output_spatial: Sequence[int], batch: int = 1) -> int:
    """MACs of a convolution: every weight is used once per output position, B * prod(weight) * prod(out)."""
    return batch * prod(weight_shape) * prod(output_spatial)


def transposed_conv_macs(weight_shape: Sequence[int], input_spatial: Sequence[int], batch: int = 1) -> int:
    """MACs of a transposed convolution: each input element is scattered once per tap, B * prod(w) * prod(in)."""
    return batch * prod(weight_shape) * prod(input_spatial)


def linear_macs(in_features: int, out_features: int, rows: int = 1) -> int:
    """MACs of a linear layer applied to `rows` vectors: rows * in * out."""
    return rows * in_features * out_features


def numel(shape: Sequence[int]) -> int:
    """Number of elements of a tensor of this shape."""
    return prod(shape)


def flops(macs: int) -> int:
    """FLOPs of `macs` multiply-accumulates: one multiply and one add each."""
    return 2 * macs


def separable_ratio(out_channels: int, kernel: Sequence[int], depth_multiplier: int = 1, groups: int = 1) -> Fraction:
    """MACs of depthwise + pointwise over those of the conv they replace: dm * g * (1/N + 1/prod(k)).

    With dm = g = 1 this is the MobileNets paper's 1/N + 1/D_K^2. Exact for MACs whenever the
    depthwise part keeps the original's output size, and for weights too.
    """
    return depth_multiplier * groups * (Fraction(1, out_channels) + Fraction(1, prod(kernel)))

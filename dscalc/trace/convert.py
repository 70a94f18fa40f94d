"""The depthwise-separable copy of a PyTorch model: every convolution that has a separable counterpart (the one
rule, `cost.kinds.has_separable`: a standard or grouped conv with a kernel > 1) becomes a depthwise conv (same
kernel, stride, padding, dilation, padding mode) then a pointwise conv (the original's bias). The original is
untouched."""

from __future__ import annotations

import copy

from torch import nn

from dscalc.cost.kinds import has_separable
from dscalc.cost.layers import conv_kind

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def eligible(module: nn.Module) -> bool:
    """A 1D/2D/3D convolution (not transposed) that `has_separable` accepts."""
    if not isinstance(module, _CONVS):
        return False
    kind = conv_kind(module.in_channels, module.out_channels, module.kernel_size, module.groups)
    return has_separable(kind, module.kernel_size)


def _pair(conv: nn.Module) -> nn.Sequential:
    cls = type(conv)
    device, dtype = conv.weight.device, conv.weight.dtype
    return nn.Sequential(
        cls(conv.in_channels, conv.in_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            groups=conv.in_channels, bias=False, padding_mode=conv.padding_mode, device=device, dtype=dtype),
        cls(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None, device=device, dtype=dtype),
    )


def separable_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy with every eligible convolution replaced, and how many were replaced."""
    clone = copy.deepcopy(model)
    targets = [(name, m) for name, m in clone.named_modules() if eligible(m)]
    for name, conv in targets:
        if not name:  # the model is itself one convolution: replaced whole
            return _pair(conv), 1
        parent_name, _, child = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, child, _pair(conv))
    return clone, len(targets)

"""Build the depthwise-separable copy of a PyTorch model: each eligible nn.Conv2d (groups 1, k > 1) becomes
depthwise (same kernel, stride, padding, dilation) + pointwise (the original's bias). The original is untouched."""

from __future__ import annotations

import copy

from torch import nn


def eligible(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.groups == 1
            and any(k > 1 for k in module.kernel_size))


def separable_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """A deep copy with every eligible Conv2d replaced, and how many were replaced."""
    clone = copy.deepcopy(model)
    targets = [(name, m) for name, m in clone.named_modules() if eligible(m)]
    for name, conv in targets:  # (a model that is itself one Conv2d is replaced whole: name "")
        device, dtype = conv.weight.device, conv.weight.dtype
        pair = nn.Sequential(
            nn.Conv2d(conv.in_channels, conv.in_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, groups=conv.in_channels, bias=False, padding_mode=conv.padding_mode,
                      device=device, dtype=dtype),
            nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None, device=device, dtype=dtype),
        )
        if not name:
            return pair, 1
        parent_name, _, child = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, child, pair)
    return clone, len(targets)

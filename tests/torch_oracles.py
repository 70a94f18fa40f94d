"""Independent oracles: the torch module equivalent to a layer, and torch's and fvcore's MAC counts."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as TF
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dscalc.cost.records import LayerCost


class PaddedConv(nn.Module):
    """A convolution after explicit (possibly asymmetric) zero padding, as Keras 'same' does it."""

    def __init__(self, conv: nn.Module, pads: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.conv = conv
        self.pad = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dim first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(TF.pad(x, self.pad))


class CroppedTransposed(nn.Module):
    """A transposed convolution whose output is cropped by (before, after) per dimension."""

    def __init__(self, conv: nn.Module, crops: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.conv = conv
        self.crops = crops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        index = [slice(None), slice(None)] + [slice(b, y.shape[2 + i] - a) for i, (b, a) in enumerate(self.crops)]
        return y[tuple(index)]


def module_for(layer: LayerCost) -> nn.Module:
    """Build the torch module that computes `layer` (random weights), from the record's geometry."""
    if layer.kind == "linear":
        return nn.Linear(layer.input_shape[1], layer.output_shape[1], bias=layer.bias > 0)
    dims = len(layer.kernel)
    cin, cout = layer.input_shape[1], layer.output_shape[1]
    kw = dict(stride=layer.stride, dilation=layer.dilation, groups=layer.groups, bias=layer.bias > 0)
    if layer.kind == "transposed":
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1]
        out_pad = tuple(layer.extra["output_padding"])
        if all(pb == pa for pb, pa in layer.padding):
            pad = tuple(pb for pb, _ in layer.padding)
            return cls(cin, cout, layer.kernel, padding=pad, output_padding=out_pad, **kw)
        # torch crops symmetrically only: crop an asymmetric ('same') padding by slicing the output
        return CroppedTransposed(cls(cin, cout, layer.kernel, padding=0, output_padding=out_pad, **kw), layer.padding)
    cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    if all(pb == pa for pb, pa in layer.padding):
        return cls(cin, cout, layer.kernel, padding=tuple(pb for pb, _ in layer.padding), **kw)
    return PaddedConv(cls(cin, cout, layer.kernel, padding=0, **kw), layer.padding)


def torch_macs(module: nn.Module, x: torch.Tensor) -> tuple[int, tuple[int, ...]]:
    """FlopCounterMode's FLOPs / 2 (it counts 2 per MAC), and the output shape."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = module(x)
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2, tuple(y.shape)


def fvcore_macs(module: nn.Module, x: torch.Tensor) -> int:
    """fvcore's count (its 'flops' are MACs)."""
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(module, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

"""Torch modules to time: a layer built from its LayerCost (by its kind's builder in `cost.kinds`), a depthwise +
pointwise pair, or a whole model - moved to the timing device, dtype and memory format, with a random input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dscalc.cost.kinds import KINDS
from dscalc.cost.records import LayerCost
from dscalc.errors import first_line
from dscalc.measure.settings import Settings
from dscalc.measure.timer import Timing, measure


def module_for(layer: LayerCost) -> Any:
    """The torch module that computes a weighted LayerCost (random weights)."""
    from torch import nn

    entry = KINDS.get(layer.kind)
    if entry is None or entry.module is None:
        raise ValueError(f"a {layer.kind} layer has no torch module to time")
    return entry.module(layer, nn)


def prepare(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings) -> Callable[[], Any]:
    """Move a module and random inputs to the device, dtype and memory format; return the call to time."""
    import torch

    dtype = getattr(torch, settings.dtype)
    module = module.to(device=settings.device, dtype=dtype).eval()
    xs = [torch.randn(s, device=settings.device, dtype=dtype) for s in input_shapes]
    if settings.channels_last:
        formats = {4: torch.channels_last, 5: torch.channels_last_3d}
        if any(x.dim() in formats for x in xs):
            module = module.to(memory_format=formats[max(x.dim() for x in xs if x.dim() in formats)])
        xs = [x.contiguous(memory_format=formats[x.dim()]) if x.dim() in formats else x for x in xs]
    return lambda: module(*xs)


def time_module(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings, label: str = "",
                own: bool = False) -> Timing:
    """Measured latency of a module on the timing device; a failure to build or move it is that row's error.
    A module the caller keeps (`own` False) is timed as a copy: moving it to a device or dtype changes it."""
    import copy

    import torch

    try:
        fn = prepare(module if own else copy.deepcopy(module), input_shapes, settings)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return Timing.failed("out of memory")
    except (RuntimeError, TypeError, ValueError) as e:
        return Timing.failed(first_line(e))
    return measure(fn, settings, label)


def time_layer(layer: LayerCost, settings: Settings) -> Timing:
    """Measured latency of one weighted layer as a torch module."""
    try:
        module = module_for(layer)
    except (RuntimeError, TypeError, ValueError) as e:
        return Timing.failed(first_line(e))
    return time_module(module, [layer.input_shape], settings, layer.name, own=True)


def time_pair(first: LayerCost, second: LayerCost, settings: Settings) -> Timing:
    """Measured latency of two layers run back to back (depthwise then pointwise)."""
    from torch import nn

    try:
        module = nn.Sequential(module_for(first), module_for(second))
    except (RuntimeError, TypeError, ValueError) as e:
        return Timing.failed(first_line(e))
    return time_module(module, [first.input_shape], settings, f"{first.name}+{second.name}", own=True)

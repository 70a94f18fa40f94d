"""Torch modules to time: a layer built from its LayerCost (by its kind's builder in `cost.kinds`), a depthwise +
pointwise pair, or a whole model - moved to the timing device, dtype and memory format, with a random input, and
handed to the settings' runtime (`measure.runtimes`) to build the call that is timed."""

from __future__ import annotations

from typing import Any

from dscalc.cost.kinds import KINDS
from dscalc.cost.records import LayerCost
from dscalc.errors import first_line
from dscalc.measure import runtimes
from dscalc.measure.settings import Settings
from dscalc.measure.timer import Ratio, Timing, measure, measure_pair


def module_for(layer: LayerCost) -> Any:
    """The torch module that computes a weighted LayerCost (random weights)."""
    from torch import nn

    entry = KINDS.get(layer.kind)
    if entry is None or entry.module is None:
        raise ValueError(f"a {layer.kind} layer has no torch module to time")
    return entry.module(layer, nn)


def place(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings,
          train: bool = False) -> tuple[Any, list[Any]]:
    """Move a module and random inputs to the device, dtype and memory format (in eval mode, or training mode)."""
    import torch

    dtype = getattr(torch, settings.dtype)
    module = module.to(device=settings.device, dtype=dtype).train(train)
    xs = [torch.randn(s, device=settings.device, dtype=dtype) for s in input_shapes]
    if settings.channels_last:
        formats = {4: torch.channels_last, 5: torch.channels_last_3d}
        if any(x.dim() in formats for x in xs):
            module = module.to(memory_format=formats[max(x.dim() for x in xs if x.dim() in formats)])
        xs = [x.contiguous(memory_format=formats[x.dim()]) if x.dim() in formats else x for x in xs]
    return module, xs


def prepare(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings) -> runtimes.Built:
    """The module placed (`place`) and built into the call its runtime times."""
    placed, xs = place(module, input_shapes, settings)
    return runtimes.build(placed, xs, settings)


def time_module(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings, label: str = "",
                own: bool = False) -> Timing:
    """Measured latency of a module on the timing device; a failure to build or move it is that row's error.
    A module the caller keeps (`own` False) is timed as a copy: moving it to a device or dtype changes it.
    The timing records its runtime; a runtime that cannot build or run the module (an op it lacks, a failed
    export or conversion) makes that row's error, never the whole command's."""
    import copy

    import torch

    try:
        built = prepare(module if own else copy.deepcopy(module), input_shapes, settings)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return runtimes.stamp(Timing.failed("out of memory"), settings)
    except Exception as e:  # the runtimes' own error types (onnxruntime's Fail, dynamo's) derive from Exception
        return runtimes.stamp(Timing.failed(_why(e, settings)), settings)
    try:
        timing = measure(built.call, settings, label)
    except Exception as e:
        timing = Timing.failed(_why(e, settings))
    finally:
        built.close()
    return runtimes.stamp(timing, settings, built)


def _why(e: BaseException, settings: Settings) -> str:
    """One line: the runtime's error, named after the runtime when it is not torch eager."""
    line = first_line(e)
    return line if settings.runtime == runtimes.DEFAULT else f"{settings.runtime}: {line}"


def time_layer(layer: LayerCost, settings: Settings) -> Timing:
    """Measured latency of one weighted layer as a torch module."""
    try:
        module = module_for(layer)
    except (RuntimeError, TypeError, ValueError) as e:
        return runtimes.stamp(Timing.failed(first_line(e)), settings)
    return time_module(module, [layer.input_shape], settings, layer.name, own=True)


def time_pair(first: LayerCost, second: LayerCost, settings: Settings) -> Timing:
    """Measured latency of two layers run back to back (depthwise then pointwise)."""
    from torch import nn

    try:
        module = nn.Sequential(module_for(first), module_for(second))
    except (RuntimeError, TypeError, ValueError) as e:
        return runtimes.stamp(Timing.failed(first_line(e)), settings)
    return time_module(module, [first.input_shape], settings, f"{first.name}+{second.name}", own=True)


def time_against(original: LayerCost, first: LayerCost, second: LayerCost,
                 settings: Settings) -> tuple[Timing, Timing, Ratio | None]:
    """A layer and the pair that would replace it (first then second), timed in interleaved blocks: each one's
    timing and the paired ratio original / pair - the measured speedup, its spread free of the machine's drift."""
    from torch import nn

    try:
        modules = [module_for(original), nn.Sequential(module_for(first), module_for(second))]
    except (RuntimeError, TypeError, ValueError) as e:
        failed = runtimes.stamp(Timing.failed(first_line(e)), settings)
        return failed, failed, None
    import torch

    built: list[runtimes.Built] = []
    try:
        for module in modules:
            built.append(prepare(module, [original.input_shape], settings))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        failed = runtimes.stamp(Timing.failed("out of memory"), settings)
        return failed, failed, None
    except Exception as e:
        failed = runtimes.stamp(Timing.failed(_why(e, settings)), settings)
        for one in built:
            one.close()
        return failed, failed, None
    try:
        t_original, t_pair, ratio = measure_pair(built[0].call, built[1].call, settings,
                                                 (original.name, f"{first.name}+{second.name}"))
    except Exception as e:
        t_original = t_pair = Timing.failed(_why(e, settings))
        ratio = None
    finally:
        for one in built:
            one.close()
    return runtimes.stamp(t_original, settings, built[0]), runtimes.stamp(t_pair, settings, built[1]), ratio


def matmul_n(device: str) -> int:
    """The matmul probe's size: as `measure.predictor` measures float32 on this kind of device."""
    return 1024 if device == "cpu" else 4096


def probes(settings: Settings) -> tuple[Timing, Timing]:
    """A large matmul and a 1-element add, each a torch module built and timed on the settings' runtime: a
    runtime's own float32 matmul peak and its per-call floor."""
    from torch import nn

    class MatMul(nn.Module):
        def forward(self, a: Any, b: Any) -> Any:
            return a @ b

    class AddOne(nn.Module):
        def forward(self, x: Any) -> Any:
            return x + 1

    n = matmul_n(settings.device)
    matmul = time_module(MatMul(), [(n, n), (n, n)], settings, "matmul", own=True)
    floor = time_module(AddOne(), [(1,)], settings, "add", own=True)
    return matmul, floor

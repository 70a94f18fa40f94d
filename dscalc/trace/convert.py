"""The depthwise-separable copy of a PyTorch model: every convolution that has a separable counterpart (the one
rule, `cost.kinds.has_separable`: a standard or grouped conv with a kernel > 1) becomes a depthwise conv (same
kernel, stride, padding, dilation, padding mode) then a pointwise conv (the original's bias). And the head copy
(`--as pointwise-head | gap-head`): every Flatten -> Linear stack as 1x1 convs + global average pooling, or global
average pooling + the same Linear widths. The original is untouched."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dscalc.cost.heads import no_model_head
from dscalc.cost.kinds import has_separable
from dscalc.cost.layers import conv_kind
from dscalc.errors import DscalcError, RuntimeFailure, first_line

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


# ------------------------------------------------------------------------------------ fully connected heads

#: `--as` values that rewrite a model's fully connected head (`cost.heads` does it for declared networks)
HEADS = ("pointwise-head", "gap-head")


def _first_tensor(tree: Any) -> torch.Tensor | None:
    if isinstance(tree, torch.Tensor):
        return tree
    if isinstance(tree, (list, tuple)):
        for item in tree:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _leaf_calls(model: nn.Module, shapes: list[tuple[int, ...]]) -> list[tuple[str, nn.Module, tuple[int, ...],
                                                                               tuple[int, ...]]]:
    """Every leaf module call of one forward on a meta copy, in order: (path, module, input shape, output shape).
    The model is not touched (the hooks go on the copy)."""
    from dscalc.trace import tracer, wrappers

    try:
        probe = wrappers.meta_copy(model)
    except Exception as e:  # an attribute deepcopy refuses (a lock, a generator)
        raise RuntimeFailure(f"finding the model's Flatten -> Linear head needs a meta copy of it, which failed: "
                             f"{type(e).__name__}: {first_line(e)}") from None
    names = {id(m): n for n, m in probe.named_modules()}
    calls: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        x, y = _first_tensor(args), _first_tensor(output)
        if x is not None and y is not None:
            calls.append((names[id(module)], module, tuple(x.shape), tuple(y.shape)))

    handles = [m.register_forward_hook(hook) for m in probe.modules() if not next(m.children(), None)]
    inputs = tracer._inputs(shapes, torch.float32, "meta")
    given = [getattr(s, "name", "") for s in shapes]
    positional = [t for t, n in zip(inputs, given) if not n]
    named = {n: t for t, n in zip(inputs, given) if n}
    try:
        with torch.no_grad():
            probe(*tracer.arguments(probe, positional), **named)
    except DscalcError:
        raise
    except Exception as e:  # a forward the meta device cannot run (or that raises): one line, exit 1
        raise RuntimeFailure(f"finding the model's Flatten -> Linear head runs it once on the meta device, which "
                             f"failed: {type(e).__name__}: {first_line(e)}") from None
    finally:
        for h in handles:
            h.remove()
    return calls


@dataclass(frozen=True)
class HeadRewrite:
    """What `head_copy` found: the Flatten -> Linear stacks rewritten (their Linear paths and the map each
    flattened), the Linear layers already applied per position (pixel, token: already pointwise convolutions) and
    those fed a flattened 1x1 map (already after a global pool); the last two are left alone."""

    stacks: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]
    per_pixel: tuple[str, ...]
    pooled: tuple[str, ...] = ()  # Linears on a flattened 1x1 map: already after a global pool, nothing to rewrite

    @property
    def replaced(self) -> int:
        return sum(len(paths) for paths, _ in self.stacks)


def find_heads(model: nn.Module, shapes: list[tuple[int, ...]]) -> HeadRewrite:
    """The Flatten -> Linear stacks of one forward: a Linear on a (B, F) input whose last spatial producer
    before it made a (B, C, H, W) map of C·H·W = F features starts one; the Linears after it, with only
    shape-keeping layers (activations, dropout) between and each fed the previous one's width, continue it."""
    calls = _leaf_calls(model, shapes)
    seen: set[str] = set()
    stacks: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
    per_pixel: list[str] = []
    pooled: list[str] = []
    i = 0
    while i < len(calls):
        name, module, x, _ = calls[i]
        i += 1
        if not isinstance(module, nn.Linear) or name in seen:
            continue
        if len(x) > 2:
            seen.add(name)
            per_pixel.append(name)
            continue
        if len(x) != 2:
            continue
        spatial = None
        for _, before, _, out in reversed(calls[: i - 1]):
            if isinstance(before, nn.Linear):
                break
            if len(out) > 2:
                spatial = out
                break
        if spatial is None or len(spatial) != 4 or spatial[0] != x[0] or math.prod(spatial[1:]) != x[1]:
            continue
        if spatial[2] * spatial[3] == 1:  # a 1x1 map (ResNet: pooled first): already the gap head
            seen.add(name)
            pooled.append(name)
            continue
        paths, width = [name], module.out_features
        seen.add(name)
        while i < len(calls):
            n, m, xi, yi = calls[i]
            if isinstance(m, nn.Linear) and len(xi) == 2 and m.in_features == width and n not in seen:
                paths.append(n)
                seen.add(n)
                width = m.out_features
            elif xi != yi:
                break
            i += 1
        stacks.append((tuple(paths), spatial[1:]))
    return HeadRewrite(tuple(stacks), tuple(per_pixel), tuple(pooled))


def _conv1x1(linear: nn.Linear, cin: int | None = None) -> nn.Conv2d:
    """The 1x1 convolution of a Linear's widths (cin: the map's channels, for the first of a stack)."""
    w = linear.weight
    return nn.Conv2d(cin or linear.in_features, linear.out_features, 1, bias=linear.bias is not None,
                     device=w.device, dtype=w.dtype)


def head_copy(model: nn.Module, shapes: list[tuple[int, ...]], as_: str) -> tuple[nn.Module, HeadRewrite]:
    """A deep copy with every Flatten -> Linear stack rewritten: `pointwise-head` - 1x1 convolutions of the same
    widths on the map, then global average pooling; `gap-head` - global average pooling, then the same Linear
    widths (the first one fed C features, not C·H·W). Raises BadInput when there is no such stack."""
    found = find_heads(model, shapes)
    if not found.stacks:
        raise no_model_head("Linear", found.pooled, found.per_pixel)
    clone = copy.deepcopy(model)

    def put(path: str, module: nn.Module) -> None:
        parent_name, _, child = path.rpartition(".")
        setattr(clone.get_submodule(parent_name) if parent_name else clone, child, module)

    for paths, (c, h, w) in found.stacks:
        linears = [clone.get_submodule(p) for p in paths]
        first = linears[0]
        assert isinstance(first, nn.Linear)
        unflatten = nn.Unflatten(1, (c, h, w))
        if as_ == "gap-head":
            wt = first.weight
            put(paths[0], nn.Sequential(unflatten, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                        nn.Linear(c, first.out_features, bias=first.bias is not None,
                                                  device=wt.device, dtype=wt.dtype)))
            continue
        for k, (path, linear) in enumerate(zip(paths, linears)):
            assert isinstance(linear, nn.Linear)
            conv = _conv1x1(linear, cin=c if k == 0 else None)
            parts: list[nn.Module] = [unflatten, conv] if k == 0 else [conv]
            if k == len(paths) - 1:
                parts += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
            put(path, nn.Sequential(*parts) if len(parts) > 1 else conv)
    return clone, found

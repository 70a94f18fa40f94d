"""`--as pointwise-head | gap-head`: a declared network's fully connected head, rewritten. No torch.

Every ``flatten`` followed by a stack of ``dense`` layers (activations, dropout, BN between them kept) becomes

- ``pointwise-head``: 1x1 convolutions of the same widths on the feature map (the NiN / SqueezeNet head), then
  global average pooling: the same params, but every dense's MACs are multiplied by the map's H x W;
- ``gap-head``: global average pooling, then the same dense widths: the first dense sees C inputs, not C x H x W.

A pure function on the spec's layer list (the other `--as` rewrites live in `cost.network`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput

HEADS = ("pointwise-head", "gap-head")
#: the layers that may sit between the dense layers of a head and are kept as they are
_BETWEEN = {"relu", "relu6", "activation", "softmax", "sigmoid", "swish", "hardswish", "dropout", "bn"}


def _kind(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind, opts = next(iter(item.items()))
    return kind, opts or {}


def rewriter(as_: str, defaults: dict[str, Any]) -> tuple[Callable[[list[Any]], list[Any]], list[int]]:
    """The list rewrite for `as_` and a one-slot counter of the heads it rewrote (filled as it runs)."""
    found = [0]

    def rewrite(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        i = 0
        while i < len(items):
            kind, opts = _kind(items[i])
            if kind != "flatten":
                out.append(items[i])
                i += 1
                continue
            # the stack after the flatten: dense layers and what lies between them, up to the last dense
            j, last = i + 1, -1
            while j < len(items) and _kind(items[j])[0] in _BETWEEN | {"dense"}:
                if _kind(items[j])[0] == "dense":
                    last = j
                j += 1
            if last < 0:  # a flatten with no dense after it: left alone
                out.append(items[i])
                i += 1
                continue
            found[0] += 1
            stack = items[i + 1: last + 1]
            gap = {"gap": {"name": opts["name"]}} if "name" in opts else "gap"
            if as_ == "gap-head":
                out += [gap, *stack]
            else:
                for item in stack:
                    k, o = _kind(item)
                    if k == "dense":
                        conv = {"filters": o["units"], "bias": o.get("bias", defaults.get("bias", True))}
                        conv.update({key: o[key] for key in ("scale", "name") if key in o})
                        out.append({"pointwise": conv})
                    else:
                        out.append(item)
                out.append(gap)
            i = last + 1
        return out

    return rewrite, found


def no_head(source: str) -> BadInput:
    return BadInput(f"{source} has no fully connected head (no flatten followed by dense layers) to rewrite", "as")


def changed_rows(original: list[LayerCost], variant: list[LayerCost]) -> tuple[str, ...]:
    """One line per row the rewrite changed (kind, MACs or params; not a zero-cost layer whose shape alone
    changed), removed or added, in network order."""
    before = {r.name: r for r in original}
    after = {r.name: r for r in variant}
    lines = []
    for name in [*before, *(n for n in after if n not in before)]:
        a, b = before.get(name), after.get(name)
        if b is None:
            assert a is not None
            lines.append(f"{name} ({a.kind}) removed")
        elif a is None:
            lines.append(f"{name} ({b.kind}) added")
        elif (a.kind, a.macs, a.params) != (b.kind, b.macs, b.params):  # (a shape alone: an activation's map)
            kind = a.kind if a.kind == b.kind else f"{a.kind} -> {b.kind}"
            lines.append(f"{name}: {kind}, MACs {a.macs:,} -> {b.macs:,}, params {a.params:,} -> {b.params:,}")
    return tuple(lines)


def activation_bytes(rows: list[LayerCost]) -> int:
    """Every layer's output, written once (bytes at the rows' dtype)."""
    return sum(r.itemsize * math.prod(r.output_shape) for r in rows)


def model_lines(as_: str, stacks: Sequence[tuple[tuple[str, ...], tuple[int, ...]]],
                per_pixel: tuple[str, ...] = ()) -> tuple[tuple[str, ...], int]:
    """A model's head rewrite, one line per stack (its fully connected layers and the (C, H, W) map they
    flattened) and per layer already applied per position; and how many layers were replaced."""
    if as_ == "pointwise-head":  # every layer of a stack becomes a 1x1 conv
        lines = [f"{', '.join(paths)}: on the {'x'.join(map(str, spatial))} map as 1x1 convs, then global "
                 "average pool" for paths, spatial in stacks]
        replaced = sum(len(paths) for paths, _ in stacks)
    else:  # the first layer of a stack is fed the pooled C features; the others are unchanged
        lines = [f"{paths[0]}: after a global average pool of the {'x'.join(map(str, spatial))} map: fed "
                 f"{spatial[0]:,} features, not {math.prod(spatial):,}" for paths, spatial in stacks]
        replaced = len(stacks)
    lines += [f"{p}: already a pointwise convolution (applied per pixel): same cost" for p in per_pixel]
    return tuple(lines), replaced


def no_model_head(dense: str, pooled: tuple[str, ...], per_pixel: tuple[str, ...]) -> BadInput:
    """A model with no Flatten -> `dense` stack on a spatial map: one line, saying what its `dense` layers are."""
    already = "".join([
        f"; {', '.join(pooled[:3])} already follow(s) a global pool (a 1x1 map)" if pooled else "",
        f"; its {len(per_pixel)} {dense} layer(s) already act per position (pixel, token): already a "
        "pointwise convolution, same cost" if per_pixel else ""])
    return BadInput(f"the model has no fully connected head (no Flatten -> {dense} on a spatial map){already}", "as")

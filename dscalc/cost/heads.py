"""`--as pointwise-head | gap-head`: a declared network's fully connected head, rewritten. No torch.

Every ``flatten`` followed by a stack of ``dense`` layers (activations, dropout, BN between them kept) becomes

- ``pointwise-head``: 1x1 convolutions of the same widths on the feature map (the NiN / SqueezeNet head), then
  global average pooling: the same params, but every dense's MACs are multiplied by the map's H x W;
- ``gap-head``: global average pooling, then the same dense widths: the first dense sees C inputs, not C x H x W.

A pure function on the spec's layer list (the other `--as` rewrites live in `cost.network`)."""

from __future__ import annotations

import math
from collections.abc import Callable
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

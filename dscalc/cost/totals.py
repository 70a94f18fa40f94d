"""Sums over a list of layer costs: totals under every counting convention, and the MobileNets paper's Table 2
breakdown by kind."""

from __future__ import annotations

from dscalc.cost.kinds import KINDS, WEIGHTED
from dscalc.cost.records import LayerCost

TOTAL_KEYS = ("params", "weights", "bias", "norm", "buffers", "macs", "flops", "bytes")


def totals(rows: list[LayerCost]) -> dict[str, int]:
    """Sums over rows: params, weights, bias, norm, buffers, macs, flops, bytes."""
    return {k: sum(getattr(r, k) for r in rows) for k in TOTAL_KEYS}


def by_kind(rows: list[LayerCost]) -> dict[str, dict[str, int]]:
    """Per weighted kind (pointwise, depthwise, standard, ...; the rest as `other`): params, weights, macs - in
    the paper's Table 2 order."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        kind = r.kind if r.kind in WEIGHTED else "other"
        slot = out.setdefault(kind, {"params": 0, "weights": 0, "macs": 0})
        slot["params"] += r.params
        slot["weights"] += r.weights
        slot["macs"] += r.macs
    order = [*TABLE2_ORDER, *(k for k in WEIGHTED if k not in TABLE2_ORDER), "other"]
    return {k: out[k] for k in order if k in out}


#: the paper's Table 2 order (Conv 1x1, Conv DW, Conv, ..., Fully connected)
TABLE2_ORDER = ("pointwise", "depthwise", "standard", "grouped", "transposed", "linear")


def paper_label(kind: str) -> str:
    """The Table 2 label of a kind ('Conv 1x1'), or 'other (BN, pool, ...)'."""
    return KINDS[kind].paper if kind in WEIGHTED else "other (BN, pool, ...)"

"""The verdict of a standard-vs-separable timing: an Enum, with the evidence (the paired ratio or the two
timings) kept beside it by the records that decide it (`latency.PairLatency`, `training.PairTraining`)."""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    """Who wins a measured pair: the separable version, the original, or neither (their spreads overlap)."""

    SEPARABLE = "separable"
    ORIGINAL = "original"
    TOO_CLOSE = "too close to call"

    def said(self, original: str = "standard") -> str:
        """As the JSON and CSV spell it: 'separable wins', '<original> wins', 'too close to call'."""
        if self is Verdict.TOO_CLOSE:
            return self.value
        return f"{'separable' if self is Verdict.SEPARABLE else original} wins"

    @property
    def short(self) -> str:
        """As a table's winner column spells it: 'separable', 'standard', 'too close'."""
        return {Verdict.SEPARABLE: "separable", Verdict.ORIGINAL: "standard", Verdict.TOO_CLOSE: "too close"}[self]


def decide(gain: float | None, overlapping: bool) -> Verdict | None:
    """The verdict of a measured speedup (original time / separable time); None unmeasured."""
    if gain is None:
        return None
    if overlapping:
        return Verdict.TOO_CLOSE
    return Verdict.SEPARABLE if gain > 1 else Verdict.ORIGINAL

"""What every way of running a model hands the tracer (eager, torch.export graph, TorchScript): how to call it
under the recorder and how to name the module running now; and the signal a meta run sends when it cannot go on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dscalc.trace.records import Size


class MetaLimit(Exception):  # noqa: N818 - a signal between the meta run and the real one
    """The meta run cannot go on; `reason` says why (an op without a meta kernel, a data-dependent shape)."""

    def __init__(self, reason: str, traced: Size) -> None:
        super().__init__(reason)
        self.reason = reason
        self.traced = traced  # activations the meta run wrote before it stopped


class Runner:
    """How one model runs: `call()` runs it under the recorder, `where()` names the running module, `existing`
    are its tensors (not activations), `types` names modules the model object itself does not show."""

    def __init__(self, call: Callable[[], Any], where: Callable[[], str], existing: list[Any],
                 types: dict[str, str] | None = None, notes: list[str] | None = None) -> None:
        self.call = call
        self.where = where
        self.existing = existing
        self.types = types or {}
        self.notes = notes or []

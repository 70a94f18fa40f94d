"""`compare NETWORK --as ...`, drawn: what the variant is (a title), and for `--as pointwise-head | gap-head` the
rows a head rewrite adds (activation bytes) and the notes naming the layers it changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dscalc.report.fmt import exact
from dscalc.report.model import Grid

if TYPE_CHECKING:
    from dscalc.study.compare import CompareStudy


#: what a network's `--as` variant is, for titles
_AS = {"pointwise-head": "its FC head as 1x1 convs + global average pool",
       "gap-head": "its FC head as global average pool + the same dense layers"}


def variant_title(as_: str | None) -> str:
    """'every conv as separable', or what a head rewrite does."""
    return _AS.get(as_ or "", f"every conv as {as_}")


def add_head_rows(grid: Grid, data: dict[str, Any], study: CompareStudy) -> None:
    """`--as pointwise-head | gap-head`: activation bytes of both sides, and the rows the rewrite changed."""
    if study.activations is not None:
        a, b = study.activations
        grid.add("activations (bytes, each output once)", exact(a), exact(b), f"{b / a:.3f}" if a else "")
        data["activation_bytes"] = list(study.activations)
    if study.as_ in _AS:
        grid.notes += [f"changed: {line}" for line in study.changed]
        data["changed"] = list(study.changed)


def model_title(study: CompareStudy) -> tuple[str, str]:
    """A model compare's title and its variant's name: its separable copy, or its head rewritten."""
    n = study.replaced or 0
    if study.as_ in _AS:
        return f"{study.target} vs {variant_title(study.as_)} ({n} Linear{'s' if n != 1 else ''} replaced)", \
            str(study.as_)
    return f"{study.target} vs its separable copy ({n} conv{'s' if n != 1 else ''} replaced)", "separable"


def add_model_head_notes(grid: Grid, data: dict[str, Any], study: CompareStudy) -> None:
    """A model's head rewrite: as a network's (`add_head_rows`: a graph's - Keras, ONNX - activation bytes, the
    Linear layers that changed and those that already act per pixel), and which rewrite it was."""
    add_head_rows(grid, data, study)
    if study.as_ in _AS:
        data["as"] = study.as_

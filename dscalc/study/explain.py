"""`dscalc explain`: one convolution worked on small numbers - the exact example (`cost.explain`, Python
fractions), the output cells asked for, and the check against torch (`trace.explain_check`, when installed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dscalc.cost.spec import LayerSpec
from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.records import Study

if TYPE_CHECKING:
    from dscalc.cost.explain import Example

CellAt = tuple[int, int, int]  # (channel, y, x)

#: the options that say what the layer is (those a user typed are checked against its kind)
LAYER_NAMES = ("cin", "cout", "k", "size", "height", "width", "stride", "padding", "dilation", "groups",
               "depth_multiplier", "output_padding", "kind")


@dataclass(frozen=True, repr=False)
class ExplainStudy(Study):
    """One layer's worked example: the exact tensors, the cells to write out, torch's check."""

    spec: LayerSpec
    example: Example
    cells: tuple[CellAt, ...]
    check: Any  # trace.explain_check.Check
    pointwise_start: int | None = None
    command: str = "explain"

    @property
    def rows(self) -> list[Any]:
        return [s.layer for s in self.example.stages]


def explain(cin: int, cout: int | None = None, k: int | str | None = None, size: int | str | None = None,
            height: int | None = None, width: int | None = None, stride: int | str = "1",
            padding: int | str = "valid", dilation: int | str = "1", groups: int = 1, depth_multiplier: int = 1,
            output_padding: int | str = "0", kind: str | None = None, values: str = "counting",
            seed: int | None = None, pointwise_start: int | None = None, cell: list[str] | str | None = None, *,
            given: set[str] | None = None, progress: O.Progress = O.QUIET) -> ExplainStudy:
    """One convolution worked on small numbers, checked against torch when it is installed."""
    from dscalc.cost.explain import EXPLAINED

    given = O.typed(explain, locals()) if given is None else given
    if kind is not None and kind not in EXPLAINED:
        raise BadInput(f"explain works through a convolution: one of {', '.join(EXPLAINED)}", "kind")
    if size is None and height is None and width is None:
        raise BadInput("is required for dscalc explain (a small input: at most 8)", "size")
    spec = LayerSpec.from_options(
        cin=cin, cout=cout, k=O.maybe(k), size=O.maybe(size), height=height, width=width, stride=O.text(stride),
        padding=O.text(padding), dilation=O.text(dilation), groups=groups, depth_multiplier=depth_multiplier,
        output_padding=O.text(output_padding), kind=kind, given=given & set(LAYER_NAMES))
    return study(spec, values=values, seed=seed, pointwise_start=pointwise_start,
                 cells=parse_cells([cell] if isinstance(cell, str) else cell))


def study(spec: LayerSpec, *, values: str = "counting", seed: int | None = None, pointwise_start: int | None = None,
          cells: Sequence[CellAt] = ((0, 0, 0),), checker: Callable[[Example], Any] | None = None) -> ExplainStudy:
    """The worked example of a checked layer, its chosen cells (checked to exist) and torch's check."""
    from dscalc.cost.explain import example

    ex = example(spec, values=values, seed=seed, pointwise_start=pointwise_start)
    for at in cells:
        ex.cell(*at)  # a cell outside the output: bad input, before any drawing
    if checker is None:
        from dscalc.trace.explain_check import check

        checker = check
    return ExplainStudy(spec, ex, tuple(cells), checker(ex), pointwise_start)


def parse_cells(texts: Sequence[str] | None) -> list[CellAt]:
    """`--cell c,y,x` (repeatable; several also separated by ';' or spaces); default the first cell."""
    if not texts:
        return [(0, 0, 0)]
    out: list[CellAt] = []
    for text in texts:
        for part in text.replace(";", " ").split():
            pieces = part.split(",")
            if len(pieces) != 3 or not all(p.strip().isdigit() for p in pieces):
                raise BadInput(f"expected channel,y,x (three non-negative integers), got {part[:40]!r}", "cell")
            c, y, x = (int(p) for p in pieces)
            if (c, y, x) not in out:
                out.append((c, y, x))
    if not out:
        raise BadInput("expected channel,y,x", "cell")
    if len(out) > 16:
        raise BadInput(f"at most 16 cells at once (to fit a screen), got {len(out)}", "cell")
    return out

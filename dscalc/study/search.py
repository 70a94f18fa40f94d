"""`dscalc search`: a design space searched - every candidate costed exactly, latency predicted per block,
constraints, the Pareto front, a score (`measure.search.run_search` does the work); the study holds its result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.records import Study

if TYPE_CHECKING:
    from dscalc.measure.search import SearchResult


@dataclass(frozen=True, repr=False)
class SearchStudy(Study):
    """A searched design space: every candidate, the front, the lookup table (`result`); `top` rows on screen."""

    result: SearchResult
    top: int = 30
    command: str = "search"

    @property
    def rows(self) -> list[Any]:
        return list(getattr(self.result, "results", []))


def search(space: str, max_latency: str | None = None, max_params: str | None = None, max_macs: str | None = None,
           max_memory: str | None = None, axes: str | None = None, score: str | None = None,
           metrics: str | Path | None = None, budget: int | None = None, seed: int = 0, top: int = 30,
           lut: str | Path | None = None, plot: str | Path | None = None, batch: int = 1, optimizer: str = "adam",
           predict: bool = False, time: bool = False, device: str = "cpu", threads: int | None = None, *,
           given: set[str] | None = None, progress: O.Progress = O.QUIET) -> SearchStudy:
    """A design space (built-in or .yaml) searched; `lut` and `plot` only say what is predicted (the CLI writes
    them, `dscalc.report.search.write_lut` / `plot` from Python)."""
    from dscalc.cost.search import parse_count, parse_seconds
    from dscalc.cost.training import optimizer as check_optimizer
    from dscalc.cost.training import parse_bytes

    if plot is not None and Path(plot).suffix.lower() not in (".png", ".svg"):
        raise BadInput(f"expected a .png or .svg file, got {plot}", "plot")
    if top < 1:
        raise BadInput(f"must be at least 1, got {top}", "top")
    check_optimizer(optimizer)
    seconds_limit = parse_seconds(max_latency, "max_latency") if max_latency else None
    params_limit = parse_count(max_params, "max_params") if max_params else None
    macs_limit = parse_count(max_macs, "max_macs") if max_macs else None
    memory_limit = parse_bytes(max_memory, "max_memory") if max_memory else None
    axis_list = [a.strip() for a in axes.split(",")] if axes is not None else None
    predicting = predict or time or lut is not None or seconds_limit is not None \
        or (axis_list is not None and "latency" in axis_list) or (score is not None and "latency" in score)
    settings = O.timing(time, device, "float32", False, threads, False)
    if predicting:
        O.need("torch", "torch", "predicting latency")
        O.estimated(settings, device, progress)
    if plot is not None:
        O.need("matplotlib", "plot", "--plot")
    from dscalc.measure.search import run_search

    with progress.bar("searching") as advance:
        result = run_search(space, axes=axis_list, max_latency=seconds_limit, max_params=params_limit,
                            max_macs=macs_limit, max_memory=memory_limit, score=score,
                            metrics=Path(metrics) if metrics is not None else None, budget=budget, seed=seed,
                            predict=predicting, settings=settings, device=device, batch=batch, optimizer=optimizer,
                            progress=advance)
    return SearchStudy(result, top)

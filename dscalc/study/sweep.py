"""`dscalc sweep`: a grid of standard-vs-separable configs, predicted and (measured) on each runtime asked for;
trained."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.options import TrainingOptions
from dscalc.study.records import Study

if TYPE_CHECKING:
    from dscalc.cost import training as T
    from dscalc.measure.settings import Settings
    from dscalc.measure.sweep import SweepRow
    from dscalc.measure.training import PairTraining


@dataclass(frozen=True)
class SweepTraining:
    """Each config of a sweep trained: its training MACs, standard and separable, and (measured) the timing."""

    options: TrainingOptions
    configs: tuple[tuple[T.Training, T.Training, float, PairTraining | None], ...]  # standard, separable, MAC ratio


@dataclass(frozen=True, repr=False)
class SweepStudy(Study):
    """A grid of standard-vs-separable configs: MAC, predicted and measured (per runtime) speedups, verdicts."""

    configs: tuple[SweepRow, ...]
    context: dict[str, Any]
    measured: bool
    runtimes: tuple[str, ...] = ()  # the runtimes named (side by side); () for the default
    training: SweepTraining | None = None
    command: str = "sweep"

    @property
    def rows(self) -> list[Any]:
        return list(self.configs)


def sweep(cin: str | list[int] = "32:512:x2", cout: str | list[int] | None = None, k: str | list[int] = "3",
          size: str | list[int] = "56", batch: str | list[int] = "1", dtype: str | list[str] = "float32",
          channels_last: str = "no", time: bool = True, device: str = "cpu", threads: int | None = None,
          tf32: bool = False, runtime: str | list[str] = "eager", plot: Any = None, training: bool = False,
          optimizer: str = "adam", *, given: set[str] | None = None, progress: O.Progress = O.QUIET) -> SweepStudy:
    """A grid of 3x3 (or k) configs: MAC, predicted and measured speedup; where separable actually wins."""
    from dscalc.cost.dtypes import check

    given = O.typed(sweep, locals()) if given is None else given
    dtypes = [check(d.strip(), timed=True).name for d in _values(dtype).split(",")]
    formats = {"no": [False], "yes": [True], "both": [False, True]}.get(channels_last)
    if formats is None:
        raise BadInput(f"expected no, yes or both, got {channels_last[:40]!r}", "channels_last")
    if plot is not None and str(plot).lower().rpartition(".")[2] not in ("png", "svg"):
        raise BadInput(f"expected a .png or .svg file, got {plot}", "plot")
    O.need("torch", "torch", "dscalc sweep")
    if plot is not None:
        O.need("matplotlib", "plot", "--plot")
    settings = O.timing(True, device, "float32", False, threads, tf32)
    assert settings is not None
    runs = O.runtimes(runtime, settings, time, channels_last=True in formats)
    train = O.training(training, optimizer, None, runs, given)
    O.estimated(settings, progress=progress)  # a sweep always predicts
    with progress.bar("sweeping") as advance:
        return study(cin=_values(cin), cout=_values(cout) if cout is not None else None, k=_values(k),
                     size=_values(size), batch=_values(batch), dtypes=dtypes, formats=formats, settings=settings,
                     measure=time, runs=runs, train=train, progress=advance)


def _values(v: Any) -> str:
    return v if isinstance(v, str) else ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def study(*, cin: str, cout: str | None, k: str, size: str, batch: str, dtypes: list[str], formats: list[bool],
          settings: Settings, measure: bool, runs: tuple[Settings, ...] = (), train: TrainingOptions | None = None,
          progress: Any = None) -> SweepStudy:
    """Run the grid (measured, or only predicted; on each of `runs` in turn where several were named)."""
    from dscalc.cost.parse import values
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured, describe
    from dscalc.measure.sweep import run

    cins, couts = values(cin, "cin"), values(cout, "cout") if cout else None
    ks, sizes, batches = values(k, "k"), values(size, "size"), values(batch, "batch")
    if runs:
        from dscalc.measure import runtimes

        names = [s.runtime for s in runs]
        rows = run(cins, couts, ks, sizes, batches, dtypes, formats, runs[0], predictor_for(runs[0]), progress,
                   names)
        with configured(runs[0]):
            context = runtimes.context(runs[0])
        context = {k_: v for k_, v in context.items() if not k_.startswith("runtime")}
        return SweepStudy(tuple(rows), {**context, "measured": True}, True, tuple(names))
    rows = run(cins, couts, ks, sizes, batches, dtypes, formats, settings if measure else None,
               predictor_for(settings), progress)
    trained = _training(rows, train, settings, measure) if train is not None else None
    return SweepStudy(tuple(rows), {**describe(settings), "measured": measure}, measure, (), trained)


def _training(rows: list[SweepRow], opts: TrainingOptions, settings: Settings, measure: bool) -> SweepTraining:
    """Every config trained: forward + backward MACs of the standard conv and of its pair, and (when measuring)
    the measured training speedup beside the inference speedup."""
    from dscalc.cost import training as T
    from dscalc.measure.settings import configured
    from dscalc.measure.training import pair_training

    out = []
    for row in rows:
        one, two = T.layer(row.comparison.original, row.comparison, opts.optimizer)
        assert two is not None
        timed, ratio = None, T.mac_speedup(one, two)
        if measure:
            here = replace(settings, dtype=row.dtype, channels_last=row.channels_last)
            with configured(here):
                timed = pair_training(row.comparison, here, opts.optimizer, ratio, row.pair.measured_speedup,
                                      with_step=False)
        out.append((one, two, ratio, timed))
    return SweepTraining(opts, tuple(out))

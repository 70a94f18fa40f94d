"""`dscalc network`: a declared network layer by layer; every weighted layer predicted and measured on each
runtime asked for; its training step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dscalc.cost import network as N
from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.options import TrainingOptions
from dscalc.study.records import Run, Study, Totals

if TYPE_CHECKING:
    from dscalc.cost import training as T
    from dscalc.cost.network import Spec as NetworkSpec
    from dscalc.cost.records import LayerCost
    from dscalc.measure.settings import Settings
    from dscalc.measure.training import TrainingTiming


@dataclass(frozen=True)
class NetworkTraining:
    options: TrainingOptions
    training: T.Training
    timed: tuple[TrainingTiming, ...] | None = None
    context: dict[str, Any] | None = None


@dataclass(frozen=True, repr=False)
class NetworkListStudy(Study):
    """`dscalc network --list`: the built-in networks."""

    specs: tuple[NetworkSpec, ...]
    command: str = "network"

    @property
    def rows(self) -> list[Any]:
        return list(self.specs)


@dataclass(frozen=True, repr=False)
class NetworkStudy(Study):
    """A declared network layer by layer; every weighted layer predicted/measured per runtime; trained."""

    meta: dict[str, Any]  # network, source, alpha, resolution, as, batch, dtype
    layers: tuple[LayerCost, ...]
    all_layers: bool = False
    runs: tuple[Run, ...] = ()
    by_runtime: bool = False
    training: NetworkTraining | None = None
    command: str = "network"

    @property
    def rows(self) -> list[Any]:
        return list(self.layers)

    @property
    def totals(self) -> Totals:
        from dscalc.cost.totals import totals

        return Totals.of(totals(list(self.layers)))

    def __repr__(self) -> str:
        t = self.totals
        return f"NetworkStudy({self.meta['network']}, macs={t.macs:,}, params={t.params:,})"


def builtins() -> NetworkListStudy:
    """`dscalc network --list`: the built-in networks."""
    return NetworkListStudy(tuple(N.load(b) for b in N.builtin_names()))


def network(name: str | None = None, alpha: float = 1.0, resolution: int | None = None, as_: str | None = None,
            batch: int = 1, dtype: str = "float32", all_layers: bool = False, list_: bool = False,
            time: bool = False, predict: bool = False, device: str = "cpu", channels_last: bool = False,
            threads: int | None = None, tf32: bool = False, runtime: str | list[str] = "eager",
            training: bool = False, optimizer: str = "adam", memory_limit: str | int | None = None, *,
            given: set[str] | None = None, progress: O.Progress = O.QUIET) -> NetworkStudy | NetworkListStudy:
    """A built-in network or a spec file, layer by layer; as asked, its latency and training step."""
    given = O.typed(network, locals()) if given is None else given
    if list_ and (training or memory_limit is not None):
        raise BadInput("lists the built-in networks; --training costs one of them", "list")
    if list_:
        return builtins()
    if name is None:
        raise BadInput("give a built-in network name (see --list) or a spec file", "network")
    settings = O.timing(time, device, dtype, channels_last, threads, tf32)
    runs = O.runtimes(runtime, settings, time)
    train = O.training(training, optimizer, memory_limit, runs, given)
    O.predicting(time, predict, settings, device, progress)
    with progress.spinner("timing every weighted layer"):
        return study(name, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype,
                     all_layers=all_layers, settings=settings, runs=runs, train=train, predict=predict,
                     device=device)


def study(target: str, *, alpha: float = 1.0, resolution: int | None = None, as_: str | None = None,
          batch: int = 1, dtype: str = "float32", all_layers: bool = False, settings: Settings | None = None,
          runs: tuple[Settings, ...] = (), train: TrainingOptions | None = None, predict: bool = False,
          device: str = "cpu") -> NetworkStudy:
    spec = N.load(target)
    rows = N.build(spec, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype)
    meta = {"network": spec.name, "source": spec.source, "alpha": alpha,
            "resolution": resolution if resolution is not None else spec.input[1], "as": as_, "batch": batch,
            "dtype": dtype}
    measured: tuple[Run, ...] = ()
    if runs:
        measured = runtime_runs(rows, runs)
    elif settings is not None or predict:
        measured = (_run(rows, settings, device, dtype),)
    trained = None
    if train is not None:
        trained = _training(target, train, settings, alpha=alpha, resolution=resolution, as_=as_, batch=batch,
                            dtype=dtype)
    return NetworkStudy(meta, tuple(rows), all_layers, measured, bool(runs), trained)


def _run(rows: list[LayerCost], settings: Settings | None, device: str, dtype: str) -> Run:
    from dscalc.measure.latency import time_rows
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import describe

    predictor = predictor_for(settings, device)
    per_layer = time_rows(rows, settings, predictor)
    context = {**(describe(settings) if settings else {"device": predictor.name}),
               "prediction": predictor.describe(dtype)}
    return Run(context, tuple(per_layer), measured=settings is not None)


def runtime_runs(rows: list[LayerCost], runs: tuple[Settings, ...], device: str = "cpu") -> tuple[Run, ...]:
    """Every weighted layer on each runtime (predicted once, from the first runtime's device)."""
    from dscalc.measure import runtimes
    from dscalc.measure.latency import time_rows
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured

    predictor = predictor_for(runs[0], device)
    out = []
    for s in runs:
        per_layer = time_rows(rows, s, predictor)
        with configured(s):
            out.append(Run(runtimes.context(s), tuple(per_layer)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- training

def counted_training(target: str, opts: TrainingOptions, *, alpha: float = 1.0, resolution: int | None = None,
                     as_: str | None = None, batch: int = 1, dtype: str = "float32") -> tuple[list[LayerCost],
                                                                                          T.Training]:
    """The rows and the training step of a declared network (and with a memory limit, the largest batch)."""
    from dscalc.cost import training as T

    O.dtype_trains(dtype)
    spec = N.load(target)
    rows, sources = N.dataflow(spec, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype)
    tr = T.network(rows, sources, opts.optimizer)
    if opts.memory_limit is not None:
        def peak(b: int) -> int:
            r, s = N.dataflow(spec, alpha=alpha, resolution=resolution, as_=as_, batch=b, dtype=dtype)
            return T.network(r, s, opts.optimizer).memory.peak

        tr.fit = T.largest_batch(peak, opts.memory_limit)
    return rows, tr


def time_training_rows(rows: list[LayerCost], tr: T.Training, settings: Settings,
                       optimizer: str) -> tuple[TrainingTiming, ...]:
    """Forward and forward + backward of every weighted row on its own (its input gradient as autograd computes
    it); the optimizer step is left out per layer (it is measured for whole models)."""
    from dscalc.cost.kinds import WEIGHTED
    from dscalc.measure.settings import configured
    from dscalc.measure.training import time_layer_training

    out = []
    by = {r.name: r for r in tr.rows}
    with configured(settings):
        for r in rows:
            if r.kind in WEIGHTED:
                out.append(time_layer_training(r, settings, optimizer, input_grad=by[r.name].input_grad,
                                               with_step=False))
    return tuple(out)


def _training(target: str, opts: TrainingOptions, settings: Settings | None, **kw: Any) -> NetworkTraining:
    rows, tr = counted_training(target, opts, **kw)
    if settings is None:
        return NetworkTraining(opts, tr)
    from dscalc.measure.settings import describe

    return NetworkTraining(opts, tr, time_training_rows(rows, tr, settings, opts.optimizer), describe(settings))

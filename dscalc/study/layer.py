"""`dscalc layer` (and `compare` of a layer): one layer and its depthwise-separable pair; predicted and measured
on each runtime asked for; its training step."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dscalc.cost.spec import LayerSpec
from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.options import TrainingOptions
from dscalc.study.records import Run, Study, Totals

if TYPE_CHECKING:
    from dscalc.cost import training as T
    from dscalc.cost.records import LayerCost, SeparableComparison
    from dscalc.measure.settings import Settings
    from dscalc.measure.training import PairTraining, TrainingTiming

#: the options that say what the layer is (those a user typed are checked against its kind)
LAYER_NAMES = ("cin", "cout", "k", "size", "height", "width", "stride", "padding", "dilation", "groups",
               "depth_multiplier", "output_padding", "bias", "dims", "batch", "kind")


@dataclass(frozen=True)
class LayerTraining:
    """A layer's training step: the layer and its pair, exactly; their memory; with timing, measured."""

    options: TrainingOptions
    one: T.Training
    pair: T.Training | None
    timed: PairTraining | TrainingTiming | None = None
    context: dict[str, Any] | None = None


@dataclass(frozen=True, repr=False)
class LayerStudy(Study):
    """One layer and, where one exists, its depthwise-separable pair; predicted/measured; trained."""

    spec: LayerSpec
    layer: LayerCost
    comparison: SeparableComparison | None
    assumptions: tuple[str, ...]
    command: str = "layer"
    runs: tuple[Run, ...] = ()  # one per runtime; () when neither predicted nor measured
    by_runtime: bool = False  # --runtime named: drawn side by side
    training: LayerTraining | None = None

    @property
    def rows(self) -> list[Any]:
        c = self.comparison
        return [self.layer] if c is None else [self.layer, c.depthwise, c.pointwise]

    @property
    def totals(self) -> Totals:
        r = self.layer
        return Totals(macs=r.macs, flops=r.flops, params=r.params, weights=r.weights, bytes=r.bytes,
                      separable_macs=self.comparison.macs if self.comparison else None)

    def __repr__(self) -> str:
        return f"LayerStudy({self.layer.kind}, macs={self.layer.macs:,}, params={self.layer.params:,})"


def layer(cin: int, cout: int | None = None, k: int | str | None = None, size: int | str | None = None,
          height: int | None = None, width: int | None = None, stride: int | str = "1", padding: int | str = "same",
          dilation: int | str = "1", groups: int = 1, depth_multiplier: int = 1, output_padding: int | str = "0",
          bias: bool = False, dims: int | None = None, batch: int = 1, kind: str | None = None,
          dtype: str = "float32", time: bool = False, predict: bool = False, device: str = "cpu",
          channels_last: bool = False, threads: int | None = None, tf32: bool = False,
          runtime: str | list[str] = "eager", training: bool = False, optimizer: str = "adam",
          memory_limit: str | int | None = None, *, given: set[str] | None = None,
          progress: O.Progress = O.QUIET) -> LayerStudy:
    """One layer, exactly: counts, the separable pair, and as asked its latency and training step."""
    given = O.typed(layer, locals()) if given is None else given
    spec = LayerSpec.from_options(
        cin=cin, cout=cout, k=O.maybe(k), size=O.maybe(size), height=height, width=width, stride=O.text(stride),
        padding=O.text(padding), dilation=O.text(dilation), groups=groups, depth_multiplier=depth_multiplier,
        output_padding=O.text(output_padding), bias=bias, dims=dims, batch=batch, kind=kind, dtype=dtype,
        given=given & set(LAYER_NAMES))
    settings = O.timing(time, device, dtype, channels_last, threads, tf32)
    runs = O.runtimes(runtime, settings, time)
    train = O.training(training, optimizer, memory_limit, runs, given)
    O.predicting(time, predict, settings, device, progress)
    with progress.spinner("measuring device ceilings and latency"):
        return study(spec, settings, runs, train, predict=predict, device=device)


def study(spec: LayerSpec, settings: Settings | None = None, runs: tuple[Settings, ...] = (),
          train: TrainingOptions | None = None, *, command: str = "layer", predict: bool = False,
          device: str = "cpu") -> LayerStudy:
    """The study of a checked layer: counts; predicted (with `predict` or settings), measured (with settings, on
    each of `runs` where several runtimes were named); trained (with `train`)."""
    built, comparison, assumptions = spec.build()
    if command == "compare" and comparison is None:
        raise BadInput(f"a {built.kind} layer has no depthwise-separable counterpart", "k")
    measured: tuple[Run, ...] = ()
    if runs:
        measured = _runtime_runs(built, comparison, runs, device)
    elif settings is not None or predict:
        measured = (_run(built, comparison, settings, device),)
    trained = _training(spec, train, settings, measured) if train is not None else None
    return LayerStudy(spec, built, comparison, tuple(assumptions), command, measured, bool(runs), trained)


def _run(built: Any, comparison: Any, settings: Settings | None, device: str) -> Run:
    """Predicted (always) and measured (with settings) latency of the layer and its pair."""
    from dscalc.measure.latency import layer_latency, pair_latency
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured, describe

    predictor = predictor_for(settings, device)
    context = {**(describe(settings) if settings else {"device": predictor.name}),
               "prediction": predictor.describe(built.dtype)}
    with configured(settings) if settings else contextlib.nullcontext():
        if comparison is not None:
            pair = pair_latency(comparison, predictor, settings)
            return Run(context, (pair.original, pair.depthwise, pair.pointwise, pair.pair), pair,
                       measured=settings is not None)
        return Run(context, (layer_latency(built, predictor, settings, name=built.kind),),
                   measured=settings is not None)


def _runtime_runs(built: Any, comparison: Any, runs: tuple[Settings, ...], device: str) -> tuple[Run, ...]:
    from dscalc.measure import runtimes
    from dscalc.measure.latency import layer_latency, pair_latency
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured

    predictor = predictor_for(runs[0], device)
    out = []
    for s in runs:
        with configured(s):
            context = runtimes.context(s)
            if comparison is not None:
                pair = pair_latency(comparison, predictor, s)
                out.append(Run(context, (pair.original, pair.depthwise, pair.pointwise, pair.pair), pair))
            else:
                out.append(Run(context, (layer_latency(built, predictor, s, name=built.kind),)))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- training

def counted_training(spec: LayerSpec, opts: TrainingOptions) -> tuple[T.Training, T.Training | None]:
    """The layer's and its pair's training steps, exactly (and with a memory limit, the largest batch)."""
    from dscalc.cost import training as T

    O.dtype_trains(spec.args.dtype)
    built, comparison, _ = spec.build()
    one, pair = T.layer(built, comparison, opts.optimizer)
    if opts.memory_limit is not None:
        one.fit, fit_pair = _fit(spec, opts.memory_limit, opts.optimizer)
        if pair is not None:
            pair.fit = fit_pair
    return one, pair


def _fit(spec: LayerSpec, limit: int, optimizer: str) -> tuple[T.BatchFit, T.BatchFit | None]:
    from dscalc.cost import training as T

    def at(batch: int) -> tuple[T.Training, T.Training | None]:
        built, comparison, _ = LayerSpec(spec.kind, replace(spec.args, batch=batch), spec.padding_text).build()
        return T.layer(built, comparison, optimizer)

    one = T.largest_batch(lambda b: at(b)[0].memory.peak, limit, " of the layer")
    pair = None
    if at(1)[1] is not None:
        pair = T.largest_batch(lambda b: at(b)[1].memory.peak, limit, " of the separable pair")  # type: ignore[union-attr]
    return one, pair


def _training(spec: LayerSpec, opts: TrainingOptions, settings: Settings | None,
              runs: tuple[Run, ...]) -> LayerTraining:
    one, pair = counted_training(spec, opts)
    if settings is None:
        return LayerTraining(opts, one, pair)
    from dscalc.cost import training as T
    from dscalc.measure.settings import configured, describe
    from dscalc.measure.training import pair_training, time_layer_training

    built, comparison, _ = spec.build()
    if comparison is not None:
        inference = runs[0].pair.measured_speedup if runs and runs[0].pair is not None else None
        with configured(settings):
            timed = pair_training(comparison, settings, opts.optimizer, T.mac_speedup(one, pair),  # type: ignore[arg-type]
                                  inference)
        return LayerTraining(opts, one, pair, timed, describe(settings))
    with configured(settings):
        single = time_layer_training(built, settings, opts.optimizer, name=built.kind)
    return LayerTraining(opts, one, pair, single, describe(settings))

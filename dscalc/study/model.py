"""`dscalc profile`: a real model traced per module (PyTorch on the meta device; ONNX and Keras from their
graph), optionally checked against fvcore; its layers and its whole forward predicted and measured on each
runtime asked for; its training step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.options import TrainingOptions
from dscalc.study.records import Memory, Run, Study, Totals

if TYPE_CHECKING:
    from dscalc.measure.predictor import Predictor
    from dscalc.measure.settings import Settings
    from dscalc.measure.training import PairTraining, TrainingTiming
    from dscalc.trace.records import ProfileResult
    from dscalc.trace.training import ModelTraining


class InMemory:
    """A model the caller already holds (an nn.Module on any device, meta included), as a model source: it is
    never moved or changed - tracing works on meta copies, timing on a copy."""

    format = "module"
    kwargs: dict[str, Any] = {}

    def __init__(self, model: Any, target: str | None = None) -> None:
        from dscalc.trace.source import Format

        self.model = model
        self.target = target or type(model).__name__
        self.spec = Format("module", "an nn.Module", lambda source, device: model)

    @property
    def needs(self) -> tuple[str, str]:
        return ("torch", "torch")

    def check_convertible(self) -> None:
        return None

    def load(self, device: str = "meta") -> Any:
        if device != "meta" and _on_meta(self.model):
            raise BadInput(f"{self.target} lives on the meta device (no weights): it can be counted, not run", "time")
        return self.model


@dataclass(frozen=True)
class ModelTrainingStudy:
    options: TrainingOptions
    traced: ModelTraining
    per_layer: tuple[PairTraining | TrainingTiming, ...] | None = None
    names: tuple[str, ...] = ()
    whole: TrainingTiming | None = None
    context: dict[str, Any] | None = None


@dataclass(frozen=True, repr=False)
class ModelStudy(Study):
    """A real model traced per module; its layers predicted/measured per runtime; its training step."""

    target: str
    result: ProfileResult
    depth: int | None = None
    format: str | None = None  # for the formats counted from their graph (onnx, keras)
    runs: tuple[Run, ...] = ()
    by_runtime: bool = False
    training: ModelTrainingStudy | None = None
    assumed: str = ""  # the input a hub model documents, taken for a run without one: the line that says so
    command: str = "profile"

    @property
    def rows(self) -> list[Any]:
        return list(self.result.rows)

    @property
    def totals(self) -> Totals:
        return Totals.of(self.result.totals)

    @property
    def memory(self) -> Memory:
        return Memory.of(self.result.memory)

    def __repr__(self) -> str:
        t = self.totals
        return f"ModelStudy({self.target}, macs={t.macs:,}, params={t.params:,})"


def _on_meta(model: Any) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def source_of(model: Any, kwargs: str | dict[str, Any] | None = None, trust_pickle: bool = False) -> Any:
    """A ModelSource for a path or a hub name, or an in-memory model (an nn.Module)."""
    if isinstance(model, str):
        from dscalc.trace.source import ModelSource

        return ModelSource.of(model, kwargs, trust_pickle)
    import os

    if isinstance(model, os.PathLike):
        from dscalc.trace.source import ModelSource

        return ModelSource.of(str(model), kwargs, trust_pickle)
    return InMemory(model)


def shapes_of(input: Any) -> list[tuple[int, ...]]:
    """Input shapes from '1x3x224x224', a tuple of ints, a tensor, or a list of those ([] for None)."""
    from dscalc.cost.parse import InputSpec, input_spec

    if input is None:
        return []
    if isinstance(input, str):
        return [input_spec(input)]
    if isinstance(input, InputSpec):  # already parsed: keeps its keyword name and dtype
        return [input]
    if hasattr(input, "shape") and not isinstance(input, (list, tuple)):
        return [tuple(int(d) for d in input.shape)]
    items = list(input)
    if items and all(isinstance(d, int) for d in items):
        return [tuple(items)]
    out: list[tuple[int, ...]] = []
    for item in items:
        out += shapes_of(item)
    return out


def inputs(source: Any, shapes: list[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], str]:
    """The input shapes (`shapes_of`), and the line that says they were assumed: without any, a graph's declared
    shapes or a hub model's documented size (bad input for any other model)."""
    if shapes:
        return shapes, ""
    if isinstance(source, InMemory):
        raise BadInput("is required for a model in memory (a shape, a tensor, or a list of them)", "input")
    shapes, assumed = source.default_input()
    return shapes, assumed


def profile(model: Any, input: Any = None, depth: int | None = None, check: str | None = None,
            kwargs: str | dict[str, Any] | None = None, trust_pickle: bool = False, time: bool = False,
            predict: bool = False, device: str = "cpu", dtype: str = "float32", channels_last: bool = False,
            threads: int | None = None, tf32: bool = False, runtime: str | list[str] = "eager",
            training: bool = False, optimizer: str = "adam", memory_limit: str | int | None = None, *,
            given: set[str] | None = None, progress: O.Progress = O.QUIET) -> ModelStudy:
    """A real model per layer: a path, `torchvision:NAME`/`timm:NAME`, or an nn.Module in memory; `input` is a
    shape ('1x3x224x224', (1, 3, 224, 224)), a tensor, or a list of those."""
    given = O.typed(profile, locals()) if given is None else given
    if depth is not None and depth < 1:
        raise BadInput(f"must be positive, got {depth}", "depth")
    if check is not None and check != "fvcore":
        raise BadInput(f"expected fvcore, got {check!r}", "check")
    given_shapes = shapes_of(input)
    source = source_of(model, kwargs, trust_pickle)
    O.need(source.needs[0], source.needs[1], "dscalc profile")  # the module its format needs: torch, onnx or keras
    shapes, assumed = inputs(source, given_shapes)
    if not source.spec.torch and (predict or check is not None or (time and source.format != "tflite")):
        raise BadInput(f"applies to PyTorch models; {source.target} is {source.spec.noun} model, counted from its "
                       "graph and not run", "time" if time else "predict" if predict else "check")
    if check is not None:
        O.need("fvcore", "torch", "--check fvcore")
    settings = O.timing(time, device, dtype, channels_last, threads, tf32)
    runs = O.runtimes(runtime, settings, time)
    if time and source.format == "tflite" and not runs:
        raise BadInput(f"{source.target} is a TFLite file: it is timed as it is on LiteRT (add --runtime litert)",
                       "time")
    train = O.training(training, optimizer, memory_limit, runs, given)
    if train is not None:
        O.source_trains(source)
        O.dtype_trains(dtype)
    if time or predict:
        O.estimated(settings, device, progress)
    with progress.spinner("tracing" + (" and timing the model and its layers" if time else "")):
        found = study(source, shapes, depth=depth, check=check, settings=settings, runs=runs, train=train,
                      dtype=dtype, predict=predict, device=device)
    return replace(found, assumed=assumed) if assumed else found


def study(source: Any, shapes: list[tuple[int, ...]], *, depth: int | None = None, check: str | None = None,
          settings: Settings | None = None, runs: tuple[Settings, ...] = (), train: TrainingOptions | None = None,
          dtype: str | None = None, predict: bool = False, device: str = "cpu") -> ModelStudy:
    """Profile the model; with `check='fvcore'` cross-check it; with settings, time its layers and its forward
    (on each of `runs` where several runtimes were named). Bytes and memory are counted at `dtype` (default: the
    timing dtype, else float32). The model is built once per device: on meta to count, on the CPU (random
    weights) to check, time, or run a model meta cannot run. ONNX and Keras models are profiled by their own
    module (no torch), counts only."""
    if source.format == "tflite" and runs:
        return ModelStudy(source.target, source.profile(shapes, depth), depth, source.format,
                          _tflite_runs(source, runs), True)
    if not source.spec.torch:
        if check is not None or settings is not None:
            raise BadInput(f"applies to PyTorch models; {source.target} is {source.spec.noun} model, counted from "
                           "its graph and not run", "check" if check is not None else "time")
        return ModelStudy(source.target, source.profile(shapes, depth), depth, source.format)
    from dscalc.trace.profile import check_fvcore, profile_model

    if runs:
        model = source.load("cpu")  # built once, as `profile --time` does: counted, then timed (as copies)
        result = profile_model(model, shapes, depth)
        if check == "fvcore":
            check_fvcore(result, lambda: source.load("cpu"))
        measured = _runtime_runs(source, model, result, shapes, runs)
    else:
        model = source.load("cpu" if settings is not None else "meta")
        dtype = dtype or (settings.dtype if settings is not None else "float32")
        result = profile_model(model, shapes, depth, dtype=dtype, build_cpu=lambda: source.load("cpu"))
        if check == "fvcore":
            check_fvcore(result, lambda: source.load("cpu"))
        measured = (_run(source, result, shapes, settings, dtype, device),) if settings is not None or predict \
            else ()
    trained = None
    if train is not None:
        trained = _training(source, shapes, train, depth=depth, dtype=dtype or "float32", settings=settings)
    return ModelStudy(source.target, result, depth, None, measured, bool(runs), trained)


def _run(source: Any, result: ProfileResult, shapes: list[tuple[int, ...]], settings: Settings | None, dtype: str,
         device: str) -> Run:
    from dscalc.measure.latency import time_rows
    from dscalc.measure.modules import time_module
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured, describe

    predictor = predictor_for(settings, device)
    per_layer = time_rows(result.layers, settings, predictor, pairs=settings is not None)
    end_to_end = None
    if settings is not None:
        with configured(settings):
            end_to_end = time_module(source.load("cpu"), shapes, settings, source.target)
    context = {**(describe(settings) if settings else {"device": predictor.name, "dtype": dtype,
                                                       "threads": predictor.threads, "tf32": False}),
               "prediction": predictor.describe(dtype)}
    whole = whole_prediction(result, predictor)
    if whole is not None:
        context["prediction"] += f"; end to end: {whole.detail}"
        context["whole_model"] = whole.method
    return Run(context, tuple(per_layer), end_to_end=end_to_end, measured=settings is not None,
               whole=whole.seconds if whole is not None else None)


def _runtime_runs(source: Any, model: Any, result: ProfileResult, shapes: list[tuple[int, ...]],
                  runs: Sequence[Settings]) -> tuple[Run, ...]:
    from dscalc.measure import runtimes
    from dscalc.measure.latency import time_rows
    from dscalc.measure.modules import time_module
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured

    predictor = predictor_for(runs[0])
    out = []
    for s in runs:
        per_layer = time_rows(result.layers, s, predictor, pairs=True)
        with configured(s):
            end_to_end = time_module(model, shapes, s, source.target)
            out.append(Run(runtimes.context(s), tuple(per_layer), end_to_end=end_to_end))
    return tuple(out)


def _tflite_runs(source: Any, runs: Sequence[Settings]) -> tuple[Run, ...]:
    """A .tflite file run on LiteRT as it is (no conversion): its whole forward, per runtime asked for."""
    from dscalc.measure import runtimes
    from dscalc.measure.settings import configured
    from dscalc.measure.timer import measure

    out = []
    for s in runs:
        if s.runtime != "litert":
            raise BadInput(f"a .tflite file runs on LiteRT only (--runtime litert), not {s.runtime}", "runtime")
        with configured(s):
            built = runtimes.litert_file(str(source.path), s)
            try:
                timing = measure(built.call, s, source.target)
            finally:
                built.close()
        out.append(Run(runtimes.context(s), (), end_to_end=runtimes.stamp(timing, s, built)))
    return tuple(out)


@dataclass(frozen=True)
class WholePrediction:
    """A whole forward's predicted latency, and how it was predicted (the profile's end-to-end row says)."""

    seconds: float
    method: str  # kernels in a network | fused units | kernels' sum
    detail: str  # one line: what it multiplied


def whole_prediction(result: ProfileResult, predictor: Predictor) -> WholePrediction | None:
    """The predicted latency of the whole forward, fusion-aware (`measure.fusion`): the traced ops grouped into the
    units the settings' runtime runs (conv + batch norm + activation, squeeze-excite, channel shuffle, residual
    add; what the runtime folds or fuses away does not run), each running kernel predicted alone plus its bytes
    at the calibration's network bandwidth and its overhead per kernel (inside a network data and code come from
    memory, not hot caches). A calibration without them (its reference chains ran no slower than alone, or cached
    before they were measured): each unit scaled by its pattern's factor, or without those `summed_model`. None
    without a calibration."""
    from dscalc.measure import fusion

    cal = predictor.calibration(result.dtype)
    if cal is None:
        return None
    runtime = predictor.settings.runtime

    def alone(k: Any) -> float | None:
        p = predictor.kernel(k, result.dtype)
        return None if p is None else p.seconds

    if cal.network_bandwidth or cal.network_overhead:
        seconds = fusion.predict(result.ops, result.dtype, runtime, alone, {}, 1.0, result.copies, cal.network)
        return None if seconds is None else WholePrediction(
            seconds, "kernels in a network", f"the kernels {runtime} runs, each alone plus {cal.network_terms()}")
    if not cal.units:
        seconds = summed_model(result, predictor)
        return None if seconds is None else WholePrediction(
            seconds, "kernels' sum", f"the kernels' sum x{cal.in_network:.2f}, as measured inside networks here")
    seconds = fusion.predict(result.ops, result.dtype, runtime, alone, cal.units, cal.in_network, result.copies)
    if seconds is None:
        return None
    found = fusion.counts(fusion.units(result.ops, runtime, result.dtype, result.copies))
    shown = ", ".join(f"{found[p]} {p} x{cal.units[p]:.2f}" for p in fusion.LEARNED if found[p] and p in cal.units)
    return WholePrediction(seconds, "fused units",
                           f"the units {runtime} runs ({shown or 'none'}; other ops x{cal.in_network:.2f})")


def whole_model(result: ProfileResult, predictor: Predictor) -> float | None:
    """The predicted latency of the whole forward (`whole_prediction`); None without a calibration."""
    found = whole_prediction(result, predictor)
    return None if found is None else found.seconds


def summed_model(result: ProfileResult, predictor: Predictor) -> float | None:
    """The one-factor prediction: every op the trace recorded (convolutions, matrix products, norms, pooling,
    elementwise) and the copies it made, each by the calibrated model of its kind, times the calibration's
    in-network factor (kernels run slower inside a network than alone); None without a calibration."""
    from dscalc.measure.fusion import copy_kernel, kernel_of_op

    total = 0.0
    kernels = [*(kernel_of_op(op, result.dtype) for op in result.ops),
               *(copy_kernel(op, result.dtype) for op in result.copies)]
    for k in kernels:
        p = predictor.kernel(k, result.dtype)
        if p is None:
            return None
        total += p.seconds
    cal = predictor.calibration(result.dtype)
    return total * (cal.in_network if cal is not None else 1.0)


# ---------------------------------------------------------------------------------------------- training

def counted_training(source: Any, shapes: list[tuple[int, ...]], opts: TrainingOptions, *,
                     depth: int | None = None, dtype: str = "float32") -> Any:
    """`trace.training.ModelTraining` of a model source (and with a memory limit, the largest batch)."""
    from dscalc.trace.training import fit_batch, trace_training

    O.source_trains(source)
    O.dtype_trains(dtype)
    model = source.load("meta")
    traced = trace_training(model, shapes, opts.optimizer, dtype, depth)
    if opts.memory_limit is not None:
        traced.training.fit = fit_batch(model, shapes, opts.memory_limit, opts.optimizer, dtype)
    return traced


def _training(source: Any, shapes: list[tuple[int, ...]], opts: TrainingOptions, *, depth: int | None,
              dtype: str, settings: Settings | None) -> ModelTrainingStudy:
    traced = counted_training(source, shapes, opts, depth=depth, dtype=dtype)
    if settings is None:
        return ModelTrainingStudy(opts, traced)
    from dscalc.cost import training as T
    from dscalc.cost.kinds import separable_of
    from dscalc.measure.settings import configured, describe
    from dscalc.measure.training import pair_training, time_layer_training, time_training
    from dscalc.trace.profile import profile_model

    layers = profile_model(source.load("meta"), shapes).layers
    per_layer: list[PairTraining | TrainingTiming] = []
    by = {r.name: r for r in traced.training.rows}
    with configured(settings):
        for layer in layers:
            row = by.get(layer.name)
            input_grad = row.input_grad if row is not None else True
            pair = separable_of(layer)
            if pair is None:
                per_layer.append(time_layer_training(layer, settings, opts.optimizer, input_grad, with_step=False))
            else:
                one, two = T.layer(layer, pair, opts.optimizer)
                per_layer.append(pair_training(pair, settings, opts.optimizer,
                                               T.mac_speedup(one, two),  # type: ignore[arg-type]
                                               input_grad=input_grad, with_step=False))
        whole = time_training(source.load("cpu"), shapes, settings, source.target, opts.optimizer, input_grad=False)
    return ModelTrainingStudy(opts, traced, tuple(per_layer), tuple(layer.name for layer in layers), whole,
                              describe(settings))

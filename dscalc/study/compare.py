"""`dscalc compare`: the original beside its variant - a layer and its separable pair, a network and its `--as`
rewrite, or a model and its separable copy - counted, predicted and measured (on each runtime asked for), and
trained."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dscalc.cost import heads
from dscalc.cost import network as N
from dscalc.errors import BadInput
from dscalc.study import layer as layer_study
from dscalc.study import options as O
from dscalc.study.layer import LayerStudy
from dscalc.study.options import TrainingOptions
from dscalc.study.records import Study, Totals

if TYPE_CHECKING:
    from dscalc.cost import training as T
    from dscalc.measure.settings import Settings
    from dscalc.measure.timer import Timing

_MODEL_NAMES = ("input", "kwargs", "trust_pickle")
_NETWORK_NAMES = ("alpha", "resolution", "as_")
_LAYER_NAMES = tuple(n for n in layer_study.LAYER_NAMES if n not in ("output_padding", "kind", "batch"))


@dataclass(frozen=True)
class Side:
    """One side of a compare of networks or models: its totals, predicted and measured (per runtime) latency."""

    name: str
    totals: dict[str, Any]
    predicted_s: float | None = None
    measured_s: tuple[float | None, ...] = ()  # one per run
    timings: tuple[Timing | None, ...] = ()  # one per run (a model's end-to-end timing)
    kind: str = "network"  # or "model"

    @property
    def params(self) -> int:
        return int(self.totals["params"])

    @property
    def macs(self) -> int:
        return int(self.totals["macs"])


@dataclass(frozen=True)
class CompareTraining:
    """Both sides of a compare, trained: their training steps and (with timing) measured forward + backward."""

    options: TrainingOptions
    original: T.Training
    variant: T.Training
    times: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True, repr=False)
class CompareStudy(Study):
    """The original beside its variant: a layer and its separable pair (`layer`), a network and its --as rewrite,
    or a model and its separable copy (`original`/`variant`)."""

    of: str  # "layer", "network" or "model"
    layer: LayerStudy | None = None
    original: Side | None = None
    variant: Side | None = None
    target: str = ""  # the network's or the model's name
    as_: str | None = None  # networks
    replaced: int | None = None  # models: convs replaced
    device: str = ""  # the predictor's device name (networks)
    contexts: tuple[dict[str, Any], ...] = ()  # one per runtime, where several were named
    training: CompareTraining | None = None
    #: `--as pointwise-head | gap-head`: the rows the rewrite changed, one line each, and both sides' activation
    #: bytes (every layer's output written once)
    changed: tuple[str, ...] = ()
    activations: tuple[int, int] | None = None
    assumed: str = ""  # a hub model's documented input, taken for a run without one: the line that says so
    command: str = "compare"

    @property
    def by_runtime(self) -> bool:
        return bool(self.contexts)

    @property
    def rows(self) -> list[Any]:
        if self.layer is not None:
            return self.layer.rows
        return [self.original, self.variant]

    @property
    def totals(self) -> Totals:
        if self.layer is not None:
            return self.layer.totals
        assert self.original is not None
        return Totals.of(self.original.totals)


def compare(target: Any = None, cin: int | None = None, cout: int | None = None, k: int | str | None = None,
            size: int | str | None = None, height: int | None = None, width: int | None = None,
            stride: int | str = "1", padding: int | str = "same", dilation: int | str = "1", groups: int = 1,
            depth_multiplier: int = 1, bias: bool = False, dims: int | None = None, batch: int = 1,
            dtype: str = "float32", input: Any = None, kwargs: str | dict[str, Any] | None = None,
            trust_pickle: bool = False, alpha: float = 1.0, resolution: int | None = None, as_: str = "separable",
            time: bool = False, device: str = "cpu", channels_last: bool = False, threads: int | None = None,
            tf32: bool = False, runtime: str | list[str] = "eager", training: bool = False, optimizer: str = "adam",
            memory_limit: str | int | None = None, *, given: set[str] | None = None,
            progress: O.Progress = O.QUIET) -> CompareStudy:
    """The original and its separable (or standard) variant side by side: a layer (no target: the layer
    options), a network (built-in name or .yaml) or a model (a path, a hub name, an nn.Module)."""
    given = O.typed(compare, locals()) if given is None else given
    O.need("torch", "torch", "dscalc compare")
    settings = O.timing(time, device, dtype, channels_last, threads, tf32)
    from dscalc.measure.settings import check_device

    check_device(device)  # compare always predicts, from this device's calibration (or ceilings)
    runs = O.runtimes(runtime, settings, time)
    train = O.training(training, optimizer, memory_limit, runs, given)
    O.estimated(settings, device, progress)
    if target is None:
        O.reject(given & set(_MODEL_NAMES), "applies to a model TARGET, not to a layer")
        O.reject(given & set(_NETWORK_NAMES), "applies to a network TARGET, not to a layer")
        if cin is None:
            raise BadInput("give a layer (--cin, --cout, --k ...), a network or a model to compare", "cin")
        from dscalc.cost.spec import LayerSpec

        spec = LayerSpec.from_options(
            cin=cin, cout=cout, k=O.maybe(k), size=O.maybe(size), height=height, width=width, stride=O.text(stride),
            padding=O.text(padding), dilation=O.text(dilation), groups=groups, depth_multiplier=depth_multiplier,
            bias=bias, dims=dims, batch=batch, dtype=dtype, given=given & set(_LAYER_NAMES))
        with progress.spinner("predicting and measuring"):
            one = layer_study.study(spec, settings, runs, train, command="compare", predict=True, device=device)
        return CompareStudy("layer", layer=one)
    from dscalc.trace.source import looks_like_model  # (a layer's compare needs no model source)

    if not isinstance(target, str) or looks_like_model(target):
        O.reject(given & set(_LAYER_NAMES + ("batch", "alpha", "resolution")),
                 "does not apply to a model (its --input shape sets the batch and sizes)")
        if as_ not in ("separable", *heads.HEADS):
            raise BadInput(f"a model is compared with its separable copy or its head rewritten "
                           f"(separable, {', '.join(heads.HEADS)}), not {as_}", "as")
        from dscalc.study.model import inputs, shapes_of, source_of

        given_shapes = shapes_of(input)
        source = source_of(target, kwargs, trust_pickle)
        shapes, assumed = inputs(source, given_shapes)
        if train is not None:
            O.source_trains(source)
        with progress.spinner("tracing and measuring"):
            found = model_study(source, shapes, settings, runs, train, as_=as_)
        return replace(found, assumed=assumed) if assumed else found
    O.reject(given & set(_LAYER_NAMES + _MODEL_NAMES), "does not apply to a network (its spec sets the layers)")
    with progress.spinner("costing and measuring"):
        return network_study(target, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype,
                             settings=settings, runs=runs, train=train, device=device)


# ----------------------------------------------------------------------------------------------- networks

def network_study(target: str, *, alpha: float, resolution: int | None, as_: str, batch: int, dtype: str,
                  settings: Settings | None, runs: tuple[Settings, ...] = (), train: TrainingOptions | None = None,
                  device: str = "cpu") -> CompareStudy:
    """A network and its `--as` variant: totals, predicted and (measured) latency, each the sum over the weighted
    layers run one by one, on each runtime."""
    from dscalc.cost.totals import totals
    from dscalc.measure import runtimes
    from dscalc.measure.latency import latency_sums, time_rows
    from dscalc.measure.predictor import predictor_for
    from dscalc.measure.settings import configured

    spec = N.load(target)
    original = N.build(spec, alpha=alpha, resolution=resolution, batch=batch, dtype=dtype)
    variant = N.build(spec, alpha=alpha, resolution=resolution, as_=as_, batch=batch, dtype=dtype)
    predictor = predictor_for(runs[0] if runs else settings, device)
    contexts, medians = [], []
    predicted: tuple[float, float] = (0.0, 0.0)
    for s in runs or (settings,):
        (p0, m0), (p1, m1) = (latency_sums(time_rows(rows, s, predictor)) for rows in (original, variant))
        predicted = (p0, p1)
        medians.append((m0, m1))
        if runs:
            with configured(s):  # type: ignore[arg-type]
                contexts.append(runtimes.context(s))  # type: ignore[arg-type]
    t0, t1 = totals(original), totals(variant)
    first = Side(spec.name, t0, predicted[0], tuple(m[0] for m in medians))
    second = Side(f"as {as_}", t1, predicted[1], tuple(m[1] for m in medians))
    trained = None
    if train is not None:
        trained = _network_training(target, train, settings, alpha=alpha, resolution=resolution, as_=as_,
                                    batch=batch, dtype=dtype)
    changed: tuple[str, ...] = ()
    activations = None
    if as_ in heads.HEADS:
        changed = heads.changed_rows(original, variant)
        activations = (heads.activation_bytes(original), heads.activation_bytes(variant))
    return CompareStudy("network", original=first, variant=second, target=spec.name, as_=as_,
                        device=predictor.name, contexts=tuple(contexts), training=trained, changed=changed,
                        activations=activations)


def _network_training(target: str, opts: TrainingOptions, settings: Settings | None, *, as_: str,
                      **kw: Any) -> CompareTraining:
    from dscalc.study.network import counted_training, time_training_rows

    rows0, a = counted_training(target, opts, **kw)
    rows1, b = counted_training(target, opts, as_=as_, **kw)
    times: tuple[float | None, float | None] = (None, None)
    if settings is not None:
        t0 = time_training_rows(rows0, a, settings, opts.optimizer)
        t1 = time_training_rows(rows1, b, settings, opts.optimizer)
        times = (_sum(t.backward.median for t in t0), _sum(t.backward.median for t in t1))
    return CompareTraining(opts, a, b, times)


def _sum(values: Any) -> float | None:
    vals = list(values)
    return sum(vals) if vals and all(v is not None for v in vals) else None


# ------------------------------------------------------------------------------------------------- models

def _variant(model: Any, shapes: list[tuple[int, ...]], as_: str) -> tuple[Any, int, tuple[str, ...]]:
    """The model's `--as` copy, how many modules were replaced, and (head rewrites) the lines naming them."""
    from dscalc.trace.convert import head_copy, separable_copy

    if as_ not in heads.HEADS:
        return (*separable_copy(model), ())
    clone, found = head_copy(model, shapes, as_)
    lines, replaced = heads.model_lines(as_, list(found.stacks), found.per_pixel)
    return clone, replaced, lines


def model_study(source: Any, shapes: list[tuple[int, ...]], settings: Settings | None,
                runs: tuple[Settings, ...] = (), train: TrainingOptions | None = None,
                as_: str = "separable") -> CompareStudy:
    """A model and its separable copy (or its head rewritten): totals, and (measured) end-to-end latency on each
    runtime. The model is built once: on meta when only counting, on the CPU with random weights when it is also
    timed."""
    from dscalc.measure import runtimes
    from dscalc.measure.modules import time_module
    from dscalc.measure.settings import configured
    from dscalc.trace.profile import profile_model

    if as_ in heads.HEADS and source.format in _GRAPH_HEADS:
        return _graph_heads(source, shapes, settings, runs, as_)
    source.check_convertible()
    original = source.load("cpu" if settings is not None or runs else "meta")
    converted, replaced, changed = _variant(original, shapes, as_)
    label = "separable" if as_ not in heads.HEADS else as_
    a, b = profile_model(original, shapes), profile_model(converted, shapes)
    contexts, timings = [], []
    if runs:
        for s in runs:
            with configured(s):
                t0 = time_module(original, shapes, s, source.target)
                t1 = time_module(converted, shapes, s, f"{source.target} ({label})")
                contexts.append(runtimes.context(s))
            timings.append((t0, t1))
    elif settings is not None:
        with configured(settings):
            t0 = time_module(original, shapes, settings, source.target)
            t1 = time_module(converted, shapes, settings, f"{source.target} ({label})", own=True)
        timings.append((t0, t1))
    first = Side(source.target, dict(a.totals), None, tuple(t[0].median for t in timings),
                 tuple(t[0] for t in timings), "model")
    second = Side(label, dict(b.totals), None, tuple(t[1].median for t in timings),
                  tuple(t[1] for t in timings), "model")
    trained = _model_training(source, shapes, train, settings, as_) if train is not None else None
    return CompareStudy("model", original=first, variant=second, target=source.target, replaced=replaced,
                        contexts=tuple(contexts), training=trained, as_=as_ if as_ in heads.HEADS else None,
                        changed=changed)


#: graph formats whose fully connected head `--as pointwise-head | gap-head` rewrites (`trace.keras_heads`,
#: `trace.onnx_heads`): the module and its name for a Dense layer
_GRAPH_HEADS = {"keras": "keras_heads", "keras_python": "keras_heads", "onnx": "onnx_heads"}


def _graph_heads(source: Any, shapes: list[tuple[int, ...]], settings: Settings | None, runs: tuple[Settings, ...],
                 as_: str) -> CompareStudy:
    """A Keras or ONNX model and its head rewritten, both counted from their graphs (never run: no --time)."""
    import importlib

    if settings is not None or runs:
        raise BadInput(f"{source.target} is {source.spec.noun} graph: dscalc counts its head rewrite, it does not "
                       "run it (compare the .py that builds it as a PyTorch model to time it)", "time")
    module = importlib.import_module(f"dscalc.trace.{_GRAPH_HEADS[source.format]}")
    a, b, changed, replaced = module.compare(source, shapes, as_)
    first = Side(source.target, dict(a.totals), kind="model")
    second = Side(as_, dict(b.totals), kind="model")
    activations = (_written(a), _written(b))
    return CompareStudy("model", original=first, variant=second, target=source.target, replaced=replaced,
                        as_=as_, changed=changed, activations=activations)


def _written(result: Any) -> int:
    """Bytes of every counted op's output, each written once (the graph profilers record the elements)."""
    from dscalc.cost.dtypes import itemsize

    return result.memory.get("activations") or sum(op.elements for op in result.ops) * itemsize(result.dtype)


def _model_training(source: Any, shapes: list[tuple[int, ...]], opts: TrainingOptions,
                    settings: Settings | None, as_: str = "separable") -> CompareTraining:
    from dscalc.measure.settings import configured
    from dscalc.measure.training import time_training
    from dscalc.trace.training import fit_batch, trace_training

    O.source_trains(source)
    model = source.load("meta")
    converted = _variant(model, shapes, as_)[0]
    a = trace_training(model, shapes, opts.optimizer).training
    b = trace_training(converted, shapes, opts.optimizer).training
    if opts.memory_limit is not None:
        a.fit = fit_batch(model, shapes, opts.memory_limit, opts.optimizer)
        b.fit = fit_batch(converted, shapes, opts.memory_limit, opts.optimizer)
    times: tuple[float | None, float | None] = (None, None)
    if settings is not None:
        with configured(settings):
            cpu = source.load("cpu")
            t0 = time_training(cpu, shapes, settings, source.target, opts.optimizer, False, with_step=False)
            label = "separable" if as_ not in heads.HEADS else as_
            t1 = time_training(_variant(cpu, shapes, as_)[0], shapes, settings, label, opts.optimizer, False,
                               with_step=False)
        times = (t0.backward.median, t1.backward.median)
    return CompareTraining(opts, a, b, times)

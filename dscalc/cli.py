"""The `dscalc` command line: typer commands that parse options, call one report builder, and deliver the report.
Only this module prints (progress to stderr, the report to stdout or --output).

Each command imports its own report builder when it runs, so a command pays only for what it uses:
`dscalc layer` never imports torch.
"""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dscalc import errors
from dscalc.cost.dtypes import DTYPES, TIMED
from dscalc.cost.kinds import KINDS
from dscalc.errors import BadInput, DscalcError, RuntimeFailure
from dscalc.report.render import Format, check_output

APP_SETTINGS: dict[str, Any] = dict(
    name="dscalc",
    help="Exact cost of convolutions - params, MACs, FLOPs, bytes - standard vs depthwise-separable.\n\n"
    "Conventions: 1 MAC = one multiply-accumulate; FLOPs = 2 x MACs; bias additions are not MACs.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**APP_SETTINGS)

# the choices come from the registries: one list of kinds (cost.kinds) and one of dtypes (cost.dtypes)
Kind = Enum("Kind", {k: k for k in KINDS}, type=str)  # type: ignore[misc]
Dtype = Enum("Dtype", {d: d for d in DTYPES}, type=str)  # type: ignore[misc]
DEFAULT_DTYPE = Dtype("float32")


class As(str, Enum):
    separable = "separable"
    standard = "standard"


class Check(str, Enum):
    fvcore = "fvcore"


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"dscalc {version('dscalc')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Exact cost of convolutions - params, MACs, FLOPs, bytes - standard vs depthwise-separable."""


# ------------------------------------------------------------------------------ options shared by commands

LAYER, TIMING, OUTPUT, MODEL, NETWORK = "Layer", "Timing (--time)", "Output", "Model", "Network"
TRAINING = "Training (--training)"

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False,
                                           rich_help_panel=OUTPUT)]
OutputOpt = Annotated[str | None, typer.Option(  # a str: a trailing slash (a directory) must reach report.render
    "--output", "-o", help="Write to FILE (a regular file is replaced whole, atomically; '-' is stdout).",
    metavar="FILE", rich_help_panel=OUTPUT)]
CinOpt = Annotated[int, typer.Option(help="Input channels (M).", show_default=False, rich_help_panel=LAYER)]
CoutOpt = Annotated[int | None, typer.Option(help="Output channels (N); a depthwise conv has cin x "
                                             "depth-multiplier.", show_default=False, rich_help_panel=LAYER)]
KOpt = Annotated[str | None, typer.Option("--k", help="Kernel size D_K: 3, or one per dimension: 3x5.", metavar="K",
                                          show_default=False, rich_help_panel=LAYER)]
SizeOpt = Annotated[str | None, typer.Option(help="Input spatial size D_F: 56, or 28x56 (default 56).",
                                             metavar="SIZE", show_default=False, rich_help_panel=LAYER)]
HeightOpt = Annotated[int | None, typer.Option(help="Input height (2D; with --width).", show_default=False,
                                               rich_help_panel=LAYER)]
WidthOpt = Annotated[int | None, typer.Option(help="Input width (2D; with --height).", show_default=False,
                                              rich_help_panel=LAYER)]
StrideOpt = Annotated[str, typer.Option(help="Stride: 2, or 1x2.", metavar="S", rich_help_panel=LAYER)]
PaddingOpt = Annotated[str, typer.Option(help="same (Keras/TF, out = ceil(in/stride)), valid, N or NxM.",
                                         metavar="P", rich_help_panel=LAYER)]
DilationOpt = Annotated[str, typer.Option(help="Dilation: 1, or 1x2.", metavar="D", rich_help_panel=LAYER)]
GroupsOpt = Annotated[int, typer.Option(help="Groups (C_in and C_out divisible by it).", rich_help_panel=LAYER)]
DmOpt = Annotated[int, typer.Option(help="Depthwise outputs per input channel (Keras).", rich_help_panel=LAYER)]
OutPadOpt = Annotated[str, typer.Option(help="Transposed conv only: extra output size.", metavar="N",
                                        rich_help_panel=LAYER)]
BiasOpt = Annotated[bool, typer.Option("--bias/--no-bias", help="Add a bias (off, as under BatchNorm).",
                                       rich_help_panel=LAYER)]
DimsOpt = Annotated[int | None, typer.Option(help="1, 2 or 3 spatial dimensions (default: from --size/--k, else 2).",
                                             show_default=False, rich_help_panel=LAYER)]
BatchOpt = Annotated[int, typer.Option(help="Batch size B.", rich_help_panel=LAYER)]
KindOpt = Annotated[Kind | None, typer.Option(help="Layer kind (default: standard, or grouped with --groups).",
                                              case_sensitive=False, show_default=False, rich_help_panel=LAYER)]
DtypeOpt = Annotated[Dtype, typer.Option(help="Element type for bytes, intensity and timing.", case_sensitive=False)]
TimeOpt = Annotated[bool, typer.Option("--time", help="Also measure latency (torch.utils.benchmark) beside its "
                                       "prediction.", rich_help_panel=TIMING)]
PredictOpt = Annotated[bool, typer.Option("--predict", help="Also predict latency from this device's calibration "
                                          "(calibrating it first if needed), without timing anything.",
                                          rich_help_panel=TIMING)]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.", metavar="cpu|cuda", rich_help_panel=TIMING)]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="Time in channels-last memory format.",
                                               rich_help_panel=TIMING)]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads for timing (default: torch's).",
                                                show_default=False, rich_help_panel=TIMING)]
Tf32Opt = Annotated[bool, typer.Option("--tf32/--no-tf32", help="Allow TF32 matmul/conv on CUDA.",
                                       rich_help_panel=TIMING)]
RuntimeOpt = Annotated[str, typer.Option(
    "--runtime", metavar="eager|compile|onnxruntime|litert",
    help="Measure on this runtime; several, comma-separated, side by side: torch eager, torch.compile (inductor), "
    + escape("ONNX Runtime (pip install 'dscalc[onnx]'), LiteRT (pip install 'dscalc[litert]')."),
    rich_help_panel=TIMING)]
InputOpt = Annotated[list[str] | None, typer.Option(
    "--input", "-i", metavar="SHAPE", help="Input shape, e.g. 1x3x224x224; repeat for several inputs.",
    show_default=False, rich_help_panel=MODEL)]
KwargsOpt = Annotated[str | None, typer.Option(help="Constructor keyword arguments as JSON.", show_default=False,
                                               rich_help_panel=MODEL)]
TrustOpt = Annotated[bool, typer.Option("--trust-pickle", help="Allow loading a pickled whole model "
                                        "(unpickling can run code).", rich_help_panel=MODEL)]
AlphaOpt = Annotated[float, typer.Option(help="Width multiplier: channels scaled by the network's rule.",
                                         rich_help_panel=NETWORK)]
ResolutionOpt = Annotated[int | None, typer.Option(help="Input resolution rho (default: the network's).",
                                                   show_default=False, rich_help_panel=NETWORK)]
TrainingOpt = Annotated[bool, typer.Option(
    "--training", help="Also cost a training step: forward, grad-input and grad-weight MACs per layer (where autograd "
    "computes them), and its memory: weights, gradients, optimizer state, saved activations, peak.",
    rich_help_panel=TRAINING)]
OptimizerOpt = Annotated[str, typer.Option(help="The optimizer whose state --training counts.",
                                           metavar="sgd|momentum|adam|adamw", rich_help_panel=TRAINING)]
MemoryLimitOpt = Annotated[str | None, typer.Option(
    "--memory-limit", help="The largest batch whose training peak fits this size (16GiB, 16GB, 512MiB); implies "
    "--training.", metavar="SIZE", show_default=False, rich_help_panel=TRAINING)]


def given(ctx: Any, names: tuple[str, ...]) -> set[str]:
    """The options among `names` that the user typed (not left at their defaults)."""
    typed = set()
    for n in names:
        source = ctx.get_parameter_source(n)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            typed.add(n)
    return typed


def _reject(typed: set[str], why: str) -> None:
    """Options that do not apply to what is being costed: one line, exit 2."""
    if typed:
        raise BadInput(why, sorted(typed)[0])


def need(module: str, extra: str, what: str) -> None:
    """A missing optional dependency: one line naming the extra that brings it, exit 1."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise RuntimeFailure(f"{what} needs {module}, which is not installed: pip install 'dscalc[{extra}]'")


def _settings(time: bool, device: str, dtype: str, channels_last: bool, threads: int | None, tf32: bool) -> Any:
    """Checked timing settings with --time (None without); the device name and thread count are checked either
    way, so a mistyped value is never silently ignored."""
    from dscalc.measure.settings import check_device_name, check_threads, settings

    check_threads(threads)
    check_device_name(device)
    if not time:
        return None
    need("torch", "torch", "--time")
    from dscalc.measure.timer import budgeted

    return budgeted(settings(device, dtype, channels_last, threads, tf32))  # a bad $DSCALC_MAX_RUN_TIME: exit 2


def _runs(runtime: str, settings: Any, time: bool, channels_last: bool | None = None) -> Any:
    """`--runtime`: checked settings per runtime, or None for the default (torch eager alone, measured as ever).
    An unknown name is bad input (exit 2); a runtime that is not installed, one line naming its extra (exit 1)."""
    from dscalc.measure.runtimes import DEFAULT, check, parse

    names = parse(runtime)
    if names == [DEFAULT]:
        return None
    if not time or settings is None:
        raise BadInput("applies to measurements: add --time", "runtime")
    return check(names, settings, channels_last)


def _training(ctx: Any, training: bool, optimizer: str, memory_limit: str | None, runs: Any = None) -> Any:
    """Checked training options with --training (or --memory-limit), None without; --optimizer alone is refused,
    and so is --training with several runtimes (a training step is timed in torch eager)."""
    from dscalc.report.training import options

    opts = options(optimizer, memory_limit)
    if not training and memory_limit is None:
        _reject(given(ctx, ("optimizer",)), "applies with --training")
        return None
    if runs:
        raise BadInput("times a training step in torch eager; --runtime compares inference runtimes", "training")
    return opts


def _predicting(time: bool, predict: bool, settings: Any, device: str) -> None:
    """--predict needs torch; a prediction (with --time or --predict) needs this device's calibration."""
    if predict:
        need("torch", "torch", "--predict")
    if time or predict:
        _calibrated(settings, device)


def _calibrated(settings: Any, device: str = "cpu") -> None:
    """Predictions need this device's calibration: the first time (float32, torch eager, the default memory
    format), measure it now, with a progress bar (about two minutes on a CPU; `dscalc device --calibrate` does it
    ahead, and for other dtypes, formats and runtimes). Elsewhere the roofline predicts, and says so."""
    from dscalc.measure.calibrate import calibrate, load_cached, probe_count
    from dscalc.measure.settings import Settings

    base = settings if settings is not None else Settings(device=device)
    if base.dtype != "float32" or base.channels_last or base.runtime != "eager" or load_cached(base) is not None:
        return
    probes = probe_count(base.dtype)
    with _bar(f"calibrating {base.device} for predictions (once; {probes} measurements)", probes) as advance:
        calibrate(base, advance)


def _deliver(report: Any, fmt: Format, output: str | None) -> None:
    from dscalc.report.render import emit, render

    color = output is None and fmt is Format.table and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8") if output is None else "utf-8"
    emit(render(report, fmt, color=color, encoding=encoding), output)


class _progress:
    """A rich spinner on stderr while work that takes more than a moment runs (only on a terminal)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.status: Any = None

    def __enter__(self) -> _progress:
        if sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(self.text)
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)


class _bar:
    """A rich progress bar on stderr (only on a terminal); yields the function that advances it."""

    def __init__(self, text: str, total: int | None = None) -> None:
        self.text, self.total = text, total
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(console=Console(stderr=True), transient=True)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.text, total=self.total)
        return lambda: self.progress.advance(self.task) if self.progress is not None else None

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


# ---------------------------------------------------------------------------------------------- commands

_LAYER_NAMES = ("cin", "cout", "k", "size", "height", "width", "stride", "padding", "dilation", "groups",
                "depth_multiplier", "output_padding", "bias", "dims", "batch", "kind")


@app.command()
def layer(
    ctx: typer.Context,
    cin: CinOpt, cout: CoutOpt = None, k: KOpt = None, size: SizeOpt = None, height: HeightOpt = None,
    width: WidthOpt = None, stride: StrideOpt = "1", padding: PaddingOpt = "same", dilation: DilationOpt = "1",
    groups: GroupsOpt = 1, depth_multiplier: DmOpt = 1, output_padding: OutPadOpt = "0", bias: BiasOpt = False,
    dims: DimsOpt = None, batch: BatchOpt = 1, kind: KindOpt = None, dtype: DtypeOpt = DEFAULT_DTYPE,
    time: TimeOpt = False, predict: PredictOpt = False, device: DeviceOpt = "cpu",
    channels_last: ChannelsLastOpt = False, threads: ThreadsOpt = None, tf32: Tf32Opt = False,
    runtime: RuntimeOpt = "eager", training: TrainingOpt = False, optimizer: OptimizerOpt = "adam",
    memory_limit: MemoryLimitOpt = None, fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """One layer, exactly: standard conv vs its depthwise-separable counterpart, side by side."""
    from dscalc.cost.spec import LayerSpec
    from dscalc.report import layer as builder

    spec = LayerSpec.from_options(
        cin=cin, cout=cout, k=k, size=size, height=height, width=width, stride=stride, padding=padding,
        dilation=dilation, groups=groups, depth_multiplier=depth_multiplier, output_padding=output_padding,
        bias=bias, dims=dims, batch=batch, kind=kind.value if kind else None, dtype=dtype.value,
        given=given(ctx, _LAYER_NAMES))
    settings = _settings(time, device, dtype.value, channels_last, threads, tf32)
    runs = _runs(runtime, settings, time)
    train = _training(ctx, training, optimizer, memory_limit, runs)
    _predicting(time, predict, settings, device)
    with _progress("measuring device ceilings and latency"):
        if runs:
            from dscalc.report import runtimes as by_runtime

            report = by_runtime.layer(spec, runs)
        else:
            report = builder.build(spec, settings, predict=predict, device=device)
        if train is not None:
            from dscalc.report import training as training_report

            training_report.add_layer(report, spec, train, settings)
    _deliver(report, fmt, output)


@app.command()
def network(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="NETWORK",
                                               help="A built-in network (see --list) or a spec file (.yaml).",
                                               show_default=False)] = None,
    alpha: AlphaOpt = 1.0, resolution: ResolutionOpt = None,
    as_: Annotated[As | None, typer.Option("--as", help="Every separable pair as a standard conv, or every "
                                           "standard/grouped k>1 conv as depthwise + pointwise.",
                                           show_default=False, rich_help_panel=NETWORK)] = None,
    batch: Annotated[int, typer.Option(help="Batch size.", rich_help_panel=NETWORK)] = 1,
    dtype: Annotated[Dtype, typer.Option(help="Element type for bytes (and timing).",
                                         case_sensitive=False)] = DEFAULT_DTYPE,
    all_layers: Annotated[bool, typer.Option("--all-layers", help="Also show BN, activation, dropout rows.",
                                             rich_help_panel=OUTPUT)] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the built-in networks and exit.")] = False,
    time: TimeOpt = False, predict: PredictOpt = False, device: DeviceOpt = "cpu",
    channels_last: ChannelsLastOpt = False, threads: ThreadsOpt = None, tf32: Tf32Opt = False,
    runtime: RuntimeOpt = "eager", training: TrainingOpt = False, optimizer: OptimizerOpt = "adam",
    memory_limit: MemoryLimitOpt = None, fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """A declared network, layer by layer: params, MACs, share; totals and the paper's Table 2 by kind."""
    from dscalc.report import network as builder

    if list_ and (training or memory_limit is not None):
        raise BadInput("lists the built-in networks; --training costs one of them", "list")
    if list_:
        _deliver(builder.builtins(), fmt, output)
        return
    if name is None:
        raise BadInput("give a built-in network name (see --list) or a spec file", "network")
    check_output(output, [name])  # never replace the spec with its report
    settings = _settings(time, device, dtype.value, channels_last, threads, tf32)
    runs = _runs(runtime, settings, time)
    train = _training(ctx, training, optimizer, memory_limit, runs)
    _predicting(time, predict, settings, device)
    with _progress("timing every weighted layer"):
        if runs:
            from dscalc.report import runtimes as by_runtime

            report = by_runtime.network(name, runs, alpha=alpha, resolution=resolution,
                                        as_=as_.value if as_ else None, batch=batch, dtype=dtype.value,
                                        all_layers=all_layers)
        else:
            report = builder.build(name, alpha=alpha, resolution=resolution, as_=as_.value if as_ else None,
                                   batch=batch, dtype=dtype.value, all_layers=all_layers, settings=settings,
                                   predict=predict, device=device)
        if train is not None:
            from dscalc.report import training as training_report

            training_report.add_network(report, name, train, alpha=alpha, resolution=resolution,
                                        as_=as_.value if as_ else None, batch=batch, dtype=dtype.value,
                                        all_layers=all_layers, settings=settings)
    _deliver(report, fmt, output)


@app.command()
def profile(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL",
                                         help="path.py[:Name], model.pt (TorchScript), model.pt2 (torch.export), "
                                         "torchvision:NAME, timm:NAME, model.onnx, model.keras, model.h5 or "
                                         "model.tflite.",
                                         show_default=False)],
    input: Annotated[list[str] | None, typer.Option("--input", "-i", metavar="SHAPE",
                                                    help="Input shape, e.g. 1x3x224x224, 1x128:int64 or "
                                                    "input_ids=1x128:int64 (a keyword argument); repeat for several "
                                                    "inputs. ONNX, Keras and TFLite: their declared shapes; timm: and "
                                                    "torchvision: models: their documented size.",
                                                    show_default=False, rich_help_panel=MODEL)] = None,
    depth: Annotated[int | None, typer.Option(help="Collapse module paths to N components.",
                                              show_default=False, rich_help_panel=OUTPUT)] = None,
    check: Annotated[Check | None, typer.Option(help="Cross-check every layer against fvcore (materializes the "
                                                "model on the CPU).", show_default=False,
                                                rich_help_panel=MODEL)] = None,
    kwargs: KwargsOpt = None, trust_pickle: TrustOpt = False,
    time: TimeOpt = False, predict: PredictOpt = False, device: DeviceOpt = "cpu", dtype: DtypeOpt = DEFAULT_DTYPE,
    channels_last: ChannelsLastOpt = False, threads: ThreadsOpt = None, tf32: Tf32Opt = False,
    runtime: RuntimeOpt = "eager", training: TrainingOpt = False, optimizer: OptimizerOpt = "adam",
    memory_limit: MemoryLimitOpt = None, fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """A real model per layer: PyTorch traced on the meta device (no weights), optionally checked against fvcore;
    ONNX and Keras models counted from their graph (no torch for ONNX)."""
    from dscalc.cost.parse import input_spec
    from dscalc.trace.source import ModelSource

    if depth is not None and depth < 1:
        raise BadInput(f"must be positive, got {depth}", "depth")
    check_output(output, [model])  # never replace the model with its report
    shapes: list[tuple[int, ...]] = [input_spec(s) for s in input or []]
    source = ModelSource.of(model, kwargs, trust_pickle)
    need(*source.needs, "dscalc profile")  # the module its format needs: torch, onnx, keras or tflite
    assumed = ""
    if not shapes:  # a graph file's declared shapes, a hub model's documented size; bad input for any other
        shapes, assumed = source.default_input()
    if not source.spec.torch and (predict or check is not None or (time and source.format != "tflite")):
        raise BadInput(f"applies to PyTorch models; {model} is {source.spec.noun} model, counted from its graph and "
                       "not run",
                       "time" if time else "predict" if predict else "check")
    if check is not None:
        need("fvcore", "torch", "--check fvcore")
    settings = _settings(time, device, dtype.value, channels_last, threads, tf32)
    runs = _runs(runtime, settings, time)
    if time and source.format == "tflite" and not runs:
        raise BadInput(f"{model} is a TFLite file: it is timed as it is on LiteRT (add --runtime litert)", "time")
    train = _training(ctx, training, optimizer, memory_limit, runs)
    if train is not None:
        from dscalc.report import training as training_report

        training_report.check_source(source)
        training_report.check_dtype_trains(dtype.value)
    if time or predict:
        _calibrated(settings, device)
    from dscalc.report import profile as builder

    with _progress("tracing" + (" and timing the model and its layers" if time else "")):
        if runs:
            from dscalc.report import runtimes as by_runtime

            report = by_runtime.profile(source, shapes, runs, depth=depth, check=check.value if check else None)
        else:
            report = builder.build(source, shapes, depth=depth, check=check.value if check else None,
                                   settings=settings, dtype=dtype.value, predict=predict, device=device)
        if train is not None:
            training_report.add_profile(report, source, shapes, train, depth=depth, dtype=dtype.value,
                                        settings=settings)
    if assumed:  # the assumption line: which input size was used
        report.grids[0].notes.insert(0, assumed)
        report.data.setdefault("notes", []).insert(0, assumed)
    _deliver(report, fmt, output)


@app.command("device")
def device_cmd(
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.", metavar="cpu|cuda")] = "cpu",
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again instead of using the cache.")] = False,
    threads: ThreadsOpt = None,
    runtime: Annotated[str, typer.Option(
        "--runtime", metavar="eager|compile|onnxruntime|litert",
        help="Also measure each runtime's own float32 matmul peak and per-call floor (comma-separated); with "
        "--calibrate, calibrate that runtime.")] = "eager",
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Measure a designed set of kernels of every kind "
                                            "and fit the latency model predictions use (cached; --refresh "
                                            "measures again).")] = False,
    dtype: Annotated[str, typer.Option(help=f"With --calibrate: the dtype ({', '.join(TIMED)}).")] = "float32",
    channels_last: ChannelsLastOpt = False,
    fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """Measured ceilings of this CPU/GPU: peak matmul FLOP/s per dtype, copy bandwidth, launch floor (cached);
    with --calibrate, the fitted latency model of every kernel kind."""
    from dscalc.measure.runtimes import DEFAULT, check, parse
    from dscalc.measure.settings import Settings, check_device, check_threads
    from dscalc.report import device as builder

    check_threads(threads)
    names = parse(runtime)
    need("torch", "torch", "dscalc device")
    check_device(device)
    if calibrate:
        from dscalc.cost.dtypes import check as check_dtype
        from dscalc.measure.calibrate import get_calibration, probe_count

        if len(names) != 1:
            raise BadInput("--calibrate takes one runtime at a time", "runtime")
        base = Settings(device=device, dtype=check_dtype(dtype, timed=True).name, channels_last=channels_last,
                        threads=threads)
        one = check(names, base, channels_last)[0] if names != [DEFAULT] else base
        probes = probe_count(one.dtype)
        with _bar(f"calibrating {device} ({probes} measurements)", probes) as advance:
            cal, cached = get_calibration(one, refresh=refresh, progress=advance)
        _deliver(builder.calibration(cal, cached), fmt, output)
        return
    runs = check(names, Settings(device=device, threads=threads)) if names != [DEFAULT] else None
    with _progress(f"measuring {device} ceilings"):
        if runs:
            from dscalc.report import runtimes as by_runtime

            report = by_runtime.device(device, runs, refresh=refresh, threads=threads)
        else:
            report = builder.build(device, refresh=refresh, threads=threads)
    _deliver(report, fmt, output)


_MODEL_NAMES = ("input", "kwargs", "trust_pickle")
_NETWORK_NAMES = ("alpha", "resolution", "as_")


@app.command()
def compare(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Argument(
        metavar="TARGET", help="Nothing (a layer from the options), a network (built-in or .yaml) or a model "
        "(.py, .pt, .pt2, torchvision:NAME).", show_default=False)] = None,
    cin: Annotated[int | None, typer.Option(help="Input channels (layer).", show_default=False,
                                            rich_help_panel=LAYER)] = None,
    cout: CoutOpt = None, k: KOpt = None, size: SizeOpt = None, height: HeightOpt = None,
    width: WidthOpt = None, stride: StrideOpt = "1", padding: PaddingOpt = "same", dilation: DilationOpt = "1",
    groups: GroupsOpt = 1, depth_multiplier: DmOpt = 1, bias: BiasOpt = False, dims: DimsOpt = None,
    batch: BatchOpt = 1, dtype: DtypeOpt = DEFAULT_DTYPE,
    input: InputOpt = None, kwargs: KwargsOpt = None, trust_pickle: TrustOpt = False,
    alpha: AlphaOpt = 1.0, resolution: ResolutionOpt = None,
    as_: Annotated[As, typer.Option("--as", help="The variant to compare with (networks).",
                                    rich_help_panel=NETWORK)] = As.separable,
    time: TimeOpt = False, device: DeviceOpt = "cpu", channels_last: ChannelsLastOpt = False,
    threads: ThreadsOpt = None, tf32: Tf32Opt = False, runtime: RuntimeOpt = "eager", training: TrainingOpt = False,
    optimizer: OptimizerOpt = "adam", memory_limit: MemoryLimitOpt = None, fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """The original and its separable (or standard) variant side by side: params, MACs, predicted and measured."""
    from dscalc.cost.parse import shape
    from dscalc.report import compare as builder
    from dscalc.trace.source import ModelSource, looks_like_model

    layer_names = tuple(n for n in _LAYER_NAMES if n not in ("output_padding", "kind", "batch"))
    check_output(output, [target] if target else [])  # never replace the model or spec with the report
    need("torch", "torch", "dscalc compare")
    settings = _settings(time, device, dtype.value, channels_last, threads, tf32)
    from dscalc.measure.settings import check_device

    check_device(device)  # compare always predicts, from this device's calibration (or ceilings)
    runs = _runs(runtime, settings, time)
    train = _training(ctx, training, optimizer, memory_limit, runs)
    _calibrated(settings, device)
    from dscalc.report import runtimes as by_runtime
    from dscalc.report import training as training_report

    if target is None:
        _reject(given(ctx, _MODEL_NAMES), "applies to a model TARGET, not to a layer")
        _reject(given(ctx, _NETWORK_NAMES), "applies to a network TARGET, not to a layer")
        if cin is None:
            raise BadInput("give a layer (--cin, --cout, --k ...), a network or a model to compare", "cin")
        from dscalc.cost.spec import LayerSpec

        spec = LayerSpec.from_options(
            cin=cin, cout=cout, k=k, size=size, height=height, width=width, stride=stride, padding=padding,
            dilation=dilation, groups=groups, depth_multiplier=depth_multiplier, bias=bias, dims=dims, batch=batch,
            dtype=dtype.value, given=given(ctx, layer_names))
        with _progress("predicting and measuring"):
            report = by_runtime.layer(spec, runs, command="compare", device=device) if runs \
                else builder.layer(spec, settings, device)
            if train is not None:
                training_report.add_layer(report, spec, train, settings)
    elif looks_like_model(target):
        _reject(given(ctx, layer_names + ("batch",) + _NETWORK_NAMES),
                "does not apply to a model (its --input shape sets the batch and sizes)")
        shapes = [shape(s) for s in input or []]
        source = ModelSource.of(target, kwargs, trust_pickle)
        assumed = ""
        if not shapes:  # a hub model's documented size; bad input for any other
            shapes, assumed = source.default_input()
        if train is not None:
            training_report.check_source(source)
        with _progress("tracing and measuring"):
            report = by_runtime.compare_model(source, shapes, runs) if runs else builder.model(source, shapes, settings)
            if train is not None:
                training_report.add_compare_model(report, source, shapes, train, settings=settings)
        if assumed:
            report.grids[0].notes.insert(0, assumed)
            report.data.setdefault("notes", []).insert(0, assumed)
    else:
        _reject(given(ctx, layer_names + _MODEL_NAMES), "does not apply to a network (its spec sets the layers)")
        with _progress("costing and measuring"):
            if runs:
                report = by_runtime.compare_network(target, runs, alpha=alpha, resolution=resolution, as_=as_.value,
                                                    batch=batch, dtype=dtype.value, device=device)
            else:
                report = builder.network(target, alpha=alpha, resolution=resolution, as_=as_.value, batch=batch,
                                         dtype=dtype.value, settings=settings, device=device)
            if train is not None:
                training_report.add_compare_network(report, target, train, alpha=alpha, resolution=resolution,
                                                    as_=as_.value, batch=batch, dtype=dtype.value, settings=settings)
    _deliver(report, fmt, output)


@app.command()
def sweep(
    ctx: typer.Context,
    cin: Annotated[str, typer.Option(help="Input channels: 32,64 or 32:512:x2.")] = "32:512:x2",
    cout: Annotated[str | None, typer.Option(help="Output channels (default: equal to cin).",
                                             show_default=False)] = None,
    k: Annotated[str, typer.Option("--k", help="Kernel sizes.")] = "3",
    size: Annotated[str, typer.Option(help="Input sizes.")] = "56",
    batch: Annotated[str, typer.Option(help="Batch sizes.")] = "1",
    dtype: Annotated[str, typer.Option(help=f"Dtypes: {','.join(TIMED)}.")] = "float32",
    channels_last: Annotated[str, typer.Option("--channels-last", help="no, yes or both.")] = "no",
    time: Annotated[bool, typer.Option("--time/--no-time", help="Measure (default) or only predict.",
                                       rich_help_panel=TIMING)] = True,
    device: DeviceOpt = "cpu", threads: ThreadsOpt = None, tf32: Tf32Opt = False, runtime: RuntimeOpt = "eager",
    plot: Annotated[Path | None, typer.Option(help="Draw the sweep to FILE.png or FILE.svg (matplotlib).",
                                              show_default=False, dir_okay=False, rich_help_panel=OUTPUT)] = None,
    training: TrainingOpt = False, optimizer: OptimizerOpt = "adam",
    fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """A grid of 3x3 (or --k) configs: MAC, predicted and measured speedup; where separable actually wins."""
    from dscalc.cost.dtypes import check

    dtypes = [check(d.strip(), timed=True).name for d in dtype.split(",")]
    formats = {"no": [False], "yes": [True], "both": [False, True]}.get(channels_last)
    if formats is None:
        raise BadInput(f"expected no, yes or both, got {channels_last[:40]!r}", "channels_last")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise BadInput(f"expected a .png or .svg file, got {plot}", "plot")
    need("torch", "torch", "dscalc sweep")
    if plot is not None:
        need("matplotlib", "plot", "--plot")
    settings = _settings(True, device, "float32", False, threads, tf32)
    runs = _runs(runtime, settings, time, channels_last=True in formats)
    train = _training(ctx, training, optimizer, None, runs)
    _calibrated(settings)  # a sweep always predicts
    from dscalc.report import sweep as builder

    with _bar("sweeping") as advance:
        if runs:
            from dscalc.report import runtimes as by_runtime

            report, rows = by_runtime.sweep(cin=cin, cout=cout, k=k, size=size, batch=batch, dtypes=dtypes,
                                            formats=formats, runs=runs, progress=advance)
        else:
            report, rows = builder.build(cin=cin, cout=cout, k=k, size=size, batch=batch, dtypes=dtypes,
                                         formats=formats, settings=settings, measure=time, progress=advance)
        if train is not None:
            from dscalc.report import training as training_report

            training_report.add_sweep(report, rows, train, settings, measure=time)
    if plot is not None:
        from dscalc.report.plot import sweep_plot

        sweep_plot(rows, str(plot), report.data["device"])
    _deliver(report, fmt, output)


@app.command()
def explain(
    ctx: typer.Context,
    cin: CinOpt, cout: CoutOpt = None, k: KOpt = None,
    size: Annotated[str | None, typer.Option(help="Input spatial size: 3, or 3x4 (required; at most 8).",
                                             metavar="SIZE", show_default=False, rich_help_panel=LAYER)] = None,
    height: HeightOpt = None, width: WidthOpt = None, stride: StrideOpt = "1",
    padding: Annotated[str, typer.Option(help="valid (Keras' default, used here), same (Keras/TF), N or NxM.",
                                         metavar="P", rich_help_panel=LAYER)] = "valid",
    dilation: DilationOpt = "1", groups: GroupsOpt = 1, depth_multiplier: DmOpt = 1,
    output_padding: OutPadOpt = "0", kind: KindOpt = None,
    values: Annotated[str, typer.Option(help="counting: input 0.1, 0.2, ... and kernels 1, 2, ... in Keras order; "
                                        "random: one-decimal inputs, integer weights (--seed).",
                                        metavar="counting|random")] = "counting",
    seed: Annotated[int | None, typer.Option(help="Seed of --values random (default 0).", show_default=False)] = None,
    pointwise_start: Annotated[int | None, typer.Option(
        help="Separable: the pointwise kernel counts from N (default 1).", metavar="N", show_default=False)] = None,
    cell: Annotated[list[str] | None, typer.Option(
        "--cell", metavar="C,Y,X", help="Output cell to write out as its sum of products (channel,y,x; repeatable; "
        "default the first).", show_default=False)] = None,
    fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """One convolution worked on small numbers: input, kernels and output as matrices, each chosen output cell as
    its sum of products, what the MAC count counts - checked against torch when it is installed. Keras layout, no
    bias; inputs and outputs up to 8x8, kernels up to 5x5, up to 4 channels."""
    from dscalc.cost.explain import EXPLAINED
    from dscalc.cost.spec import LayerSpec
    from dscalc.report import explain as builder

    if kind is not None and kind.value not in EXPLAINED:
        raise BadInput(f"explain works through a convolution: one of {', '.join(EXPLAINED)}", "kind")
    if size is None and height is None and width is None:
        raise BadInput("is required for dscalc explain (a small input: at most 8)", "size")
    spec = LayerSpec.from_options(
        cin=cin, cout=cout, k=k, size=size, height=height, width=width, stride=stride, padding=padding,
        dilation=dilation, groups=groups, depth_multiplier=depth_multiplier, output_padding=output_padding,
        kind=kind.value if kind else None,
        given=given(ctx, ("cin", "cout", "k", "size", "height", "width", "stride", "padding", "dilation", "groups",
                          "depth_multiplier", "output_padding", "kind")))
    report = builder.build(spec, values=values, seed=seed, pointwise_start=pointwise_start,
                           cells=builder.parse_cells(cell))
    _deliver(report, fmt, output)
def search(
    space: Annotated[str, typer.Argument(metavar="SPACE", help="A built-in design space (cifar_modules, "
                                         "mobilenet_v1_blocks, mobilenet_v2_blocks) or a space .yaml.")],
    max_latency: Annotated[str | None, typer.Option(
        help="Keep candidates whose predicted latency is at most TIME: 3ms, 250us.", metavar="TIME",
        show_default=False)] = None,
    max_params: Annotated[str | None, typer.Option(help="At most this many learnable params: 300k, 1.5M.",
                                                   metavar="N", show_default=False)] = None,
    max_macs: Annotated[str | None, typer.Option(help="At most this many MACs: 50M.", metavar="N",
                                                 show_default=False)] = None,
    max_memory: Annotated[str | None, typer.Option(help="Training-step peak at most this size: 512MiB, 2GB.",
                                                   metavar="SIZE", show_default=False)] = None,
    axes: Annotated[str | None, typer.Option(help="The Pareto front's axes, all minimised (default latency,params "
                                             "when predicting, else macs,params).", show_default=False)] = None,
    score: Annotated[str | None, typer.Option(help="Rank by this arithmetic of the candidate's figures and --metrics "
                                              "columns, e.g. 'error + 0.05 * keras_params / 250000'.",
                                              metavar="EXPR", show_default=False)] = None,
    metrics: Annotated[Path | None, typer.Option(help="CSV of known figures per candidate: an id column "
                                                 "(sep/sep/dw) and numeric columns (error, ...).", metavar="FILE",
                                                 dir_okay=False, show_default=False)] = None,
    budget: Annotated[int | None, typer.Option(
        help="Cost at most N candidates, sampled by Optuna (pip install 'dscalc\\[search]') when the space is larger.",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="The sampler's seed.")] = 0,
    top: Annotated[int, typer.Option(help="Rows the table shows (JSON and CSV carry all).")] = 30,
    lut: Annotated[Path | None, typer.Option(help="Write the per-block latency lookup table to FILE (JSON).",
                                             metavar="FILE", dir_okay=False, show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="Draw latency vs params, the front and the labels, to FILE.png "
                                              "or FILE.svg.", show_default=False, dir_okay=False,
                                              rich_help_panel=OUTPUT)] = None,
    batch: BatchOpt = 1, optimizer: OptimizerOpt = "adam",
    predict: PredictOpt = False, time: Annotated[bool, typer.Option(
        "--time", help="Measure the front's candidates whole and every block of the lookup table.",
        rich_help_panel=TIMING)] = False,
    device: DeviceOpt = "cpu", threads: ThreadsOpt = None,
    fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """A design space searched: every candidate costed exactly, latency predicted per block, constraints, the
    Pareto front, a score; --time measures the front."""
    from dscalc.cost.search import parse_count, parse_seconds
    from dscalc.cost.training import optimizer as check_optimizer
    from dscalc.cost.training import parse_bytes
    from dscalc.measure.search import run_search

    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
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
    settings = _settings(time, device, "float32", False, threads, False)
    if predicting:
        need("torch", "torch", "predicting latency")
        _calibrated(settings, device)
    if plot is not None:
        need("matplotlib", "plot", "--plot")
    with _bar("searching") as advance:
        result = run_search(space, axes=axis_list, max_latency=seconds_limit, max_params=params_limit,
                            max_macs=macs_limit, max_memory=memory_limit, score=score, metrics=metrics,
                            budget=budget, seed=seed, predict=predicting, settings=settings, device=device,
                            batch=batch, optimizer=optimizer, progress=advance)
    from dscalc.report import search as builder

    if lut is not None:
        builder.write_lut(result, lut)
    if plot is not None:
        builder.plot(result, str(plot))
    _deliver(builder.build(result, top), fmt, output)


# ------------------------------------------------------------------------------------------- entry point

def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command being run: typer builds the options of every registered command at
    start-up, and `dscalc layer` should not pay for the other five. Help and unknown names get the full app."""
    name = args[0] if args else None
    chosen = [c for c in app.registered_commands
              if name == (c.name or getattr(c.callback, "__name__", "").replace("_", "-"))]
    if len(chosen) != 1:
        return app
    lean = typer.Typer(**APP_SETTINGS)
    lean.registered_callback = app.registered_callback
    lean.registered_commands = chosen
    return lean


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line and exit 2 for bad input, exit 1 for a runtime failure, 130 for
    Ctrl-C. Never a traceback (DSCALC_DEBUG=1 shows one for an internal error)."""
    args = sys.argv[1:] if argv is None else list(argv)
    errors.guard_streams()  # a closed stdout/stderr (cron's >&-) gets /dev/null: no internal error, same exit status
    if not args:
        args = ["--help"]
    previous = signal.signal(signal.SIGINT, errors.on_sigint) if _main_thread() else None
    try:
        rv = _app_for(args)(args=args, prog_name="dscalc", standalone_mode=False)
    except BadInput as e:
        _fail(e.for_cli(), e.exit_code)
    except DscalcError as e:
        _fail(str(e), e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except typer.TyperException as e:  # click's usage errors: missing option, not an integer, bad choice
        _fail(e.format_message().replace("Value error, ", "").splitlines()[0], e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except RecursionError:
        _fail("input nested too deeply", 2)
    except MemoryError:
        _fail("out of memory", 1)
    except Exception as e:  # a bug in dscalc: one line, not a traceback (DSCALC_DEBUG=1 for the traceback)
        if os.environ.get("DSCALC_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {errors.first_line(e)} (set DSCALC_DEBUG=1 for the traceback)",
              1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if rv == 130 and errors.interrupted():  # typer turns Ctrl-C into a quiet exit status 130: say so
        _fail("interrupted", 130)
    sys.exit(rv if isinstance(rv, int) else 0)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fail(message: str, code: int) -> None:
    errors.say(f"dscalc: error: {message}")  # escaped, one line; a closed or full stderr keeps the exit status
    sys.exit(code)


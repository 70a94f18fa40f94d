"""The `dscalc` command line: typer commands that parse options, call one study function (`dscalc.study`), draw
the study (`dscalc.report`) and deliver it. Only this module prints (progress to stderr, the report to stdout or
--output). Which options go together is the study functions' business: the Python API checks the same way.

Each command imports its own study when it runs, so a command pays only for what it uses: `dscalc layer` never
imports torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dscalc import errors
from dscalc.cost.dtypes import DTYPES, TIMED
from dscalc.cost.kinds import KINDS
from dscalc.errors import BadInput, DscalcError
from dscalc.report.render import Format

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
OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write to FILE (a regular file is replaced whole, atomically; '-' is stdout).",
    dir_okay=False, metavar="FILE", rich_help_panel=OUTPUT)]
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
    "ONNX Runtime (pip install 'dscalc[onnx]'), LiteRT (pip install 'dscalc[litert]').", rich_help_panel=TIMING)]
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


def given(ctx: Any) -> set[str]:
    """The options the user typed (not left at their defaults): checked against what is being costed."""
    typed = set()
    for n in ctx.params:
        source = ctx.get_parameter_source(n)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            typed.add(n)
    return typed


class _Progress:
    """Rich spinners and progress bars on stderr while a study works (only on a terminal)."""

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        if not sys.stderr.isatty():
            yield
            return
        from rich.console import Console

        with Console(stderr=True).status(text):
            yield

    @contextlib.contextmanager
    def bar(self, text: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        if not sys.stderr.isatty():
            yield lambda: None
            return
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(text, total=total)
            yield lambda: progress.advance(task)


def _run(ctx: Any, study: Callable[..., Any], fmt: Format, output: Path | None, **options: Any) -> Any:
    """Call one study function with the options as typed (enums as their values), draw it, deliver it."""
    values = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    result = study(**values, given=given(ctx), progress=_Progress())
    from dscalc.report.draw import draw

    _deliver(draw(result), fmt, output)
    return result


def _deliver(report: Any, fmt: Format, output: Path | None) -> None:
    from dscalc.report.render import emit, render

    color = output is None and fmt is Format.table and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8") if output is None else "utf-8"
    emit(render(report, fmt, color=color, encoding=encoding), output)


# ---------------------------------------------------------------------------------------------- commands

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
    from dscalc.study.layer import layer as study

    _run(ctx, study, **_options(locals()))


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
    from dscalc.study.network import network as study

    _run(ctx, study, **_options(locals()))


@app.command()
def profile(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL",
                                         help="path.py[:Name], model.pt (TorchScript), model.pt2 (torch.export), "
                                         "torchvision:NAME, timm:NAME, model.onnx, model.keras or model.h5.",
                                         show_default=False)],
    input: Annotated[list[str], typer.Option("--input", "-i", metavar="SHAPE",
                                             help="Input shape, e.g. 1x3x224x224; repeat for "
                                             "several inputs.", show_default=False, rich_help_panel=MODEL)],
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
    from dscalc.study.model import profile as study

    _run(ctx, study, **_options(locals()))


@app.command("device")
def device_cmd(
    ctx: typer.Context,
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
    from dscalc.study.device import device as study

    _run(ctx, lambda given, **o: study(**o), **_options(locals()))


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
    from dscalc.study.compare import compare as study

    _run(ctx, study, **_options(locals()))


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
    from dscalc.study.sweep import sweep as study

    def and_plot(**options: Any) -> Any:
        result = study(**options)
        if plot is not None:
            from dscalc.report.plot import sweep_plot

            sweep_plot(list(result.configs), str(plot), result.context["device"])
        return result

    _run(ctx, and_plot, **_options(locals(), "and_plot", "study"))


def _options(values: dict[str, Any], *skip: str) -> dict[str, Any]:
    """A command's options as its study function takes them (ctx, fmt and output passed on to _run)."""
    return {k: v for k, v in values.items() if k not in ("ctx", "study", *skip)}


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
    sys.stderr.write(f"dscalc: error: {message}\n")
    sys.exit(code)


"""The typer options of the commands: their types, names, help and panels, declared once (a command lists the ones
it takes); the choices come from the registries (kinds from cost.kinds, dtypes from cost.dtypes). Also what a
command needs from typer at run time: the options the user typed (`given`), and the spinners and bars shown on
stderr while a study works (`Progress`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dscalc.cost.dtypes import DTYPES, TIMED
from dscalc.cost.kinds import KINDS
from dscalc.report.render import Format

# the choices come from the registries: one list of kinds (cost.kinds) and one of dtypes (cost.dtypes)
Kind = Enum("Kind", {k: k for k in KINDS}, type=str)  # type: ignore[misc]
Dtype = Enum("Dtype", {d: d for d in DTYPES}, type=str)  # type: ignore[misc]
DEFAULT_DTYPE = Dtype("float32")


class As(str, Enum):
    separable = "separable"
    standard = "standard"
    pointwise_head = "pointwise-head"
    gap_head = "gap-head"


class Check(str, Enum):
    fvcore = "fvcore"


def version(value: bool) -> None:
    """--version: the installed version, then exit."""
    if value:
        from importlib.metadata import version as installed

        typer.echo(f"dscalc {installed('dscalc')}")
        raise typer.Exit()


def check_output_first(output: str | None, options: dict[str, Any]) -> None:
    """Before any work: --output never names a directory, nor the model or spec the report is made from (a missing
    network name and a bad --depth are said first)."""
    from dscalc.report.render import check_output

    target = options.get("name") or options.get("model") or options.get("target")
    waits = options.get("list_") or ("name" in options and target is None) or (options.get("depth") or 1) < 1
    if not waits and any(k in options for k in ("name", "model", "target")):
        check_output(output, [target] if target else [])


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
SizeOpt = Annotated[str | None, typer.Option(help="Input spatial size D_F: 56, or 28x56 (default 56). With --kind "
                                             "linear: the channels-last map it is applied to per position (as a 1x1 "
                                             "conv).",
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
PredictOpt = Annotated[bool, typer.Option("--predict", help="Also predict latency, without timing anything: from "
                                          "this device's calibration where one is cached (dscalc device --calibrate),"
                                          " else a quick estimate from its ceilings.",
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


def given(ctx: Any) -> set[str]:
    """The options the user typed (not left at their defaults): checked against what is being costed."""
    typed = set()
    for n in ctx.params:
        source = ctx.get_parameter_source(n)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            typed.add(n)
    return typed


class Progress:
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


# ---------------------------------------------------------------------------------- options of one command

NetworkArg = Annotated[str | None, typer.Argument(metavar="NETWORK",
                                                  help="A built-in network (see --list) or a spec file (.yaml).",
                                                  show_default=False)]
NetworkAsOpt = Annotated[As | None, typer.Option("--as", help="Every separable pair as a standard conv, or every "
                                                 "standard/grouped k>1 conv as depthwise + pointwise; or the "
                                                 "Flatten -> Dense head as 1x1 convs + global average pool "
                                                 "(pointwise-head) or global average pool + the same Dense "
                                                 "layers (gap-head).",
                                                 show_default=False, rich_help_panel=NETWORK)]
NetworkBatchOpt = Annotated[int, typer.Option(help="Batch size.", rich_help_panel=NETWORK)]
NetworkDtypeOpt = Annotated[Dtype, typer.Option(help="Element type for bytes (and timing).", case_sensitive=False)]
AllLayersOpt = Annotated[bool, typer.Option("--all-layers", help="Also show BN, activation, dropout rows.",
                                            rich_help_panel=OUTPUT)]
ListOpt = Annotated[bool, typer.Option("--list", help="List the built-in networks and exit.")]
ModelArg = Annotated[str, typer.Argument(metavar="MODEL",
                                         help="path.py[:Name], model.pt (TorchScript), model.pt2 (torch.export), "
                                         "torchvision:NAME, timm:NAME, model.onnx, model.keras, model.h5 or "
                                         "model.tflite.",
                                         show_default=False)]
ProfileInputOpt = Annotated[list[str] | None, typer.Option(
    "--input", "-i", metavar="SHAPE", help="Input shape, e.g. 1x3x224x224, 1x128:int64 or input_ids=1x128:int64 (a "
    "keyword argument); repeat for several inputs. ONNX, Keras and TFLite: their declared shapes; timm: and "
    "torchvision: models: their documented size.", show_default=False, rich_help_panel=MODEL)]
DepthOpt = Annotated[int | None, typer.Option(help="Collapse module paths to N components.",
                                              show_default=False, rich_help_panel=OUTPUT)]
CheckOpt = Annotated[Check | None, typer.Option(help="Cross-check every layer against fvcore (materializes the "
                                                "model on the CPU).", show_default=False, rich_help_panel=MODEL)]
DeviceNameOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N.", metavar="cpu|cuda")]
RefreshOpt = Annotated[bool, typer.Option("--refresh", help="Measure again instead of using the cache.")]
DeviceRuntimeOpt = Annotated[str, typer.Option(
    "--runtime", metavar="eager|compile|onnxruntime|litert",
    help="Also measure each runtime's own float32 matmul peak and per-call floor (comma-separated); with "
    "--calibrate, calibrate that runtime.")]
CalibrateOpt = Annotated[bool, typer.Option("--calibrate", help="Measure a designed set of kernels of every kind "
                                            "and fit the latency model predictions use (cached; --refresh "
                                            "measures again).")]
CalibrateDtypeOpt = Annotated[str, typer.Option(help=f"With --calibrate: the dtype ({', '.join(TIMED)}).")]
CalibrateBudgetOpt = Annotated[float | None, typer.Option(
    "--budget", metavar="SECONDS", help="With --calibrate: the time budget (default 120 s); with scikit-learn "
    "(pip install 'dscalc\\[learn]'), adaptive sampling measures the kernels the learned model is least sure of "
    "until it is spent.", show_default=False)]
TargetArg = Annotated[str | None, typer.Argument(
    metavar="TARGET", help="Nothing (a layer from the options), a network (built-in or .yaml) or a model "
    "(.py, .pt, .pt2, torchvision:NAME).", show_default=False)]
CompareCinOpt = Annotated[int | None, typer.Option(help="Input channels (layer).", show_default=False,
                                                   rich_help_panel=LAYER)]
CompareAsOpt = Annotated[As, typer.Option("--as", help="The variant to compare with (networks): every conv as "
                                          "separable or standard, or the Flatten -> Dense head as "
                                          "pointwise-head or gap-head.",
                                          rich_help_panel=NETWORK)]
SweepCinOpt = Annotated[str, typer.Option(help="Input channels: 32,64 or 32:512:x2.")]
SweepCoutOpt = Annotated[str | None, typer.Option(help="Output channels (default: equal to cin).",
                                                  show_default=False)]
SweepKOpt = Annotated[str, typer.Option("--k", help="Kernel sizes.")]
SweepSizeOpt = Annotated[str, typer.Option(help="Input sizes.")]
SweepBatchOpt = Annotated[str, typer.Option(help="Batch sizes.")]
SweepDtypeOpt = Annotated[str, typer.Option(help=f"Dtypes: {','.join(TIMED)}.")]
SweepChannelsLastOpt = Annotated[str, typer.Option("--channels-last", help="no, yes or both.")]
SweepTimeOpt = Annotated[bool, typer.Option("--time/--no-time", help="Measure (default) or only predict.",
                                            rich_help_panel=TIMING)]
PlotOpt = Annotated[Path | None, typer.Option(help="Draw the sweep to FILE.png or FILE.svg (matplotlib).",
                                              show_default=False, dir_okay=False, rich_help_panel=OUTPUT)]
ExplainSizeOpt = Annotated[str | None, typer.Option(help="Input spatial size: 3, or 3x4 (required; at most 8).",
                                                    metavar="SIZE", show_default=False, rich_help_panel=LAYER)]
ExplainPaddingOpt = Annotated[str, typer.Option(help="valid (Keras' default, used here), same (Keras/TF), N or NxM.",
                                                metavar="P", rich_help_panel=LAYER)]
ValuesOpt = Annotated[str, typer.Option(help="counting: input 0.1, 0.2, ... and kernels 1, 2, ... in Keras order; "
                                        "random: one-decimal inputs, integer weights (--seed).",
                                        metavar="counting|random")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of --values random (default 0).", show_default=False)]
PointwiseStartOpt = Annotated[int | None, typer.Option(
    help="Separable: the pointwise kernel counts from N (default 1).", metavar="N", show_default=False)]
CellOpt = Annotated[list[str] | None, typer.Option(
    "--cell", metavar="C,Y,X", help="Output cell to write out as its sum of products (channel,y,x; repeatable; "
    "default the first).", show_default=False)]
SpaceArg = Annotated[str, typer.Argument(metavar="SPACE", help="A built-in design space (cifar_modules, "
                                         "mobilenet_v1_blocks, mobilenet_v2_blocks) or a space .yaml.")]
MaxLatencyOpt = Annotated[str | None, typer.Option(
    help="Keep candidates whose predicted latency is at most TIME: 3ms, 250us.", metavar="TIME", show_default=False)]
MaxParamsOpt = Annotated[str | None, typer.Option(help="At most this many learnable params: 300k, 1.5M.", metavar="N",
                                                  show_default=False)]
MaxMacsOpt = Annotated[str | None, typer.Option(help="At most this many MACs: 50M.", metavar="N", show_default=False)]
MaxMemoryOpt = Annotated[str | None, typer.Option(help="Training-step peak at most this size: 512MiB, 2GB.",
                                                  metavar="SIZE", show_default=False)]
AxesOpt = Annotated[str | None, typer.Option(help="The Pareto front's axes, all minimised (default latency,params "
                                             "when predicting, else macs,params).", show_default=False)]
ScoreOpt = Annotated[str | None, typer.Option(help="Rank by this arithmetic of the candidate's figures and --metrics "
                                              "columns, e.g. 'error + 0.05 * keras_params / 250000'.",
                                              metavar="EXPR", show_default=False)]
MetricsOpt = Annotated[Path | None, typer.Option(help="CSV of known figures per candidate: an id column "
                                                 "(sep/sep/dw) and numeric columns (error, ...).", metavar="FILE",
                                                 dir_okay=False, show_default=False)]
BudgetOpt = Annotated[int | None, typer.Option(
    help="Cost at most N candidates, sampled by Optuna (pip install 'dscalc\\[search]') when the space is larger.",
    show_default=False)]
SearchSeedOpt = Annotated[int, typer.Option(help="The sampler's seed.")]
TopOpt = Annotated[int, typer.Option(help="Rows the table shows (JSON and CSV carry all).")]
LutOpt = Annotated[Path | None, typer.Option(help="Write the per-block latency lookup table to FILE (JSON).",
                                             metavar="FILE", dir_okay=False, show_default=False)]
SearchPlotOpt = Annotated[Path | None, typer.Option(help="Draw latency vs params, the front and the labels, to "
                                                    "FILE.png or FILE.svg.", show_default=False, dir_okay=False,
                                                    rich_help_panel=OUTPUT)]
SearchTimeOpt = Annotated[bool, typer.Option("--time", help="Measure the front's candidates whole and every block of "
                                             "the lookup table.", rich_help_panel=TIMING)]

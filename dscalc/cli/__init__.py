"""The `dscalc` command line: typer commands that parse options, call one study function (`dscalc.study`), draw
the study (`dscalc.report`) and deliver it. Only this module prints (progress to stderr, the report to stdout or
--output). Which options go together is the study functions' business: the Python API checks the same way.

Each command imports its own study when it runs, so a command pays only for what it uses: `dscalc layer` never
imports torch.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from dscalc import errors
from dscalc.cli import options as O
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


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=O.version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Exact cost of convolutions - params, MACs, FLOPs, bytes - standard vs depthwise-separable."""


def _run(ctx: Any, study: Callable[..., Any], fmt: Format, output: str | None, **options: Any) -> Any:
    """Call one study function with the options as typed (enums as their values), draw it, deliver it."""
    values = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
    O.check_output_first(output, values)
    result = study(**values, given=O.given(ctx), progress=O.Progress())
    from dscalc.report.draw import draw

    _deliver(draw(result), fmt, output)
    return result


def _deliver(report: Any, fmt: Format, output: str | None) -> None:
    from dscalc.report.render import emit, render

    color = output is None and fmt is Format.table and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8") if output is None else "utf-8"
    emit(render(report, fmt, color=color, encoding=encoding), output)


# ---------------------------------------------------------------------------------------------- commands

@app.command()
def layer(
    ctx: typer.Context,
    cin: O.CinOpt, cout: O.CoutOpt = None, k: O.KOpt = None, size: O.SizeOpt = None, height: O.HeightOpt = None,
    width: O.WidthOpt = None, stride: O.StrideOpt = "1", padding: O.PaddingOpt = "same", dilation: O.DilationOpt = "1",
    groups: O.GroupsOpt = 1, depth_multiplier: O.DmOpt = 1, output_padding: O.OutPadOpt = "0", bias: O.BiasOpt = False,
    dims: O.DimsOpt = None, batch: O.BatchOpt = 1, kind: O.KindOpt = None, dtype: O.DtypeOpt = O.DEFAULT_DTYPE,
    time: O.TimeOpt = False, predict: O.PredictOpt = False, device: O.DeviceOpt = "cpu",
    channels_last: O.ChannelsLastOpt = False, threads: O.ThreadsOpt = None, tf32: O.Tf32Opt = False,
    runtime: O.RuntimeOpt = "eager", training: O.TrainingOpt = False, optimizer: O.OptimizerOpt = "adam",
    memory_limit: O.MemoryLimitOpt = None, fmt: O.FormatOpt = Format.table, output: O.OutputOpt = None,
) -> None:
    """One layer, exactly: standard conv vs its depthwise-separable counterpart, side by side."""
    from dscalc.study.layer import layer as study

    _run(ctx, study, **_options(locals()))


@app.command()
def network(
    ctx: typer.Context, name: O.NetworkArg = None, alpha: O.AlphaOpt = 1.0, resolution: O.ResolutionOpt = None,
    as_: O.NetworkAsOpt = None, batch: O.NetworkBatchOpt = 1, dtype: O.NetworkDtypeOpt = O.DEFAULT_DTYPE,
    all_layers: O.AllLayersOpt = False, list_: O.ListOpt = False,
    time: O.TimeOpt = False, predict: O.PredictOpt = False, device: O.DeviceOpt = "cpu",
    channels_last: O.ChannelsLastOpt = False, threads: O.ThreadsOpt = None, tf32: O.Tf32Opt = False,
    runtime: O.RuntimeOpt = "eager", training: O.TrainingOpt = False, optimizer: O.OptimizerOpt = "adam",
    memory_limit: O.MemoryLimitOpt = None, fmt: O.FormatOpt = Format.table, output: O.OutputOpt = None,
) -> None:
    """A declared network, layer by layer: params, MACs, share; totals and the paper's Table 2 by kind."""
    from dscalc.study.network import network as study

    _run(ctx, study, **_options(locals()))


@app.command()
def profile(
    ctx: typer.Context, model: O.ModelArg, input: O.ProfileInputOpt = None, depth: O.DepthOpt = None,
    check: O.CheckOpt = None, kwargs: O.KwargsOpt = None, trust_pickle: O.TrustOpt = False, time: O.TimeOpt = False,
    predict: O.PredictOpt = False, device: O.DeviceOpt = "cpu", dtype: O.DtypeOpt = O.DEFAULT_DTYPE,
    channels_last: O.ChannelsLastOpt = False, threads: O.ThreadsOpt = None, tf32: O.Tf32Opt = False,
    runtime: O.RuntimeOpt = "eager", training: O.TrainingOpt = False, optimizer: O.OptimizerOpt = "adam",
    memory_limit: O.MemoryLimitOpt = None, fmt: O.FormatOpt = Format.table, output: O.OutputOpt = None,
) -> None:
    """A real model per layer: PyTorch traced on the meta device (no weights), optionally checked against fvcore;
    ONNX and Keras models counted from their graph (no torch for ONNX)."""
    from dscalc.study.model import profile as study

    _run(ctx, study, **_options(locals()))


@app.command("device")
def device_cmd(
    ctx: typer.Context, device: O.DeviceNameOpt = "cpu", refresh: O.RefreshOpt = False, threads: O.ThreadsOpt = None,
    runtime: O.DeviceRuntimeOpt = "eager", calibrate: O.CalibrateOpt = False, dtype: O.CalibrateDtypeOpt = "float32",
    channels_last: O.ChannelsLastOpt = False, budget: O.CalibrateBudgetOpt = None, fmt: O.FormatOpt = Format.table,
    output: O.OutputOpt = None,
) -> None:
    """Measured ceilings of this CPU/GPU: peak matmul FLOP/s per dtype, copy bandwidth, launch floor (cached);
    with --calibrate, the fitted latency model of every kernel kind."""
    from dscalc.study.device import device as study

    _run(ctx, lambda given, **o: study(**o), **_options(locals()))


@app.command()
def compare(
    ctx: typer.Context, target: O.TargetArg = None, cin: O.CompareCinOpt = None,
    cout: O.CoutOpt = None, k: O.KOpt = None, size: O.SizeOpt = None, height: O.HeightOpt = None,
    width: O.WidthOpt = None, stride: O.StrideOpt = "1", padding: O.PaddingOpt = "same", dilation: O.DilationOpt = "1",
    groups: O.GroupsOpt = 1, depth_multiplier: O.DmOpt = 1, bias: O.BiasOpt = False, dims: O.DimsOpt = None,
    batch: O.BatchOpt = 1, dtype: O.DtypeOpt = O.DEFAULT_DTYPE,
    input: O.InputOpt = None, kwargs: O.KwargsOpt = None, trust_pickle: O.TrustOpt = False,
    alpha: O.AlphaOpt = 1.0, resolution: O.ResolutionOpt = None, as_: O.CompareAsOpt = O.As.separable,
    time: O.TimeOpt = False, device: O.DeviceOpt = "cpu", channels_last: O.ChannelsLastOpt = False,
    threads: O.ThreadsOpt = None, tf32: O.Tf32Opt = False, runtime: O.RuntimeOpt = "eager",
    training: O.TrainingOpt = False, optimizer: O.OptimizerOpt = "adam", memory_limit: O.MemoryLimitOpt = None,
    fmt: O.FormatOpt = Format.table, output: O.OutputOpt = None,
) -> None:
    """The original beside its separable, standard or --as *-head variant: params, MACs, predicted and measured."""
    from dscalc.study.compare import compare as study

    _run(ctx, study, **_options(locals()))


@app.command()
def sweep(
    ctx: typer.Context, cin: O.SweepCinOpt = "32:512:x2", cout: O.SweepCoutOpt = None, k: O.SweepKOpt = "3",
    size: O.SweepSizeOpt = "56", batch: O.SweepBatchOpt = "1", dtype: O.SweepDtypeOpt = "float32",
    channels_last: O.SweepChannelsLastOpt = "no", time: O.SweepTimeOpt = True,
    device: O.DeviceOpt = "cpu", threads: O.ThreadsOpt = None, tf32: O.Tf32Opt = False, runtime: O.RuntimeOpt = "eager",
    plot: O.PlotOpt = None, training: O.TrainingOpt = False, optimizer: O.OptimizerOpt = "adam",
    fmt: O.FormatOpt = Format.table, output: O.OutputOpt = None,
) -> None:
    """A grid of 3x3 (or --k) configs: MAC, predicted and measured speedup; where separable actually wins."""
    from dscalc.study.sweep import sweep as study

    def and_plot(**options: Any) -> Any:
        result = study(**options)
        if plot is not None:
            from dscalc.report.plot import sweep_plot

            sweep_plot(list(result.configs), str(plot), result.context["device"])
        return result

    _run(ctx, and_plot, **_options(locals(), "and_plot"))


@app.command()
def explain(
    ctx: typer.Context, cin: O.CinOpt, cout: O.CoutOpt = None, k: O.KOpt = None, size: O.ExplainSizeOpt = None,
    height: O.HeightOpt = None, width: O.WidthOpt = None, stride: O.StrideOpt = "1",
    padding: O.ExplainPaddingOpt = "valid", dilation: O.DilationOpt = "1", groups: O.GroupsOpt = 1,
    depth_multiplier: O.DmOpt = 1, output_padding: O.OutPadOpt = "0", kind: O.KindOpt = None,
    values: O.ValuesOpt = "counting", seed: O.SeedOpt = None, pointwise_start: O.PointwiseStartOpt = None,
    cell: O.CellOpt = None, fmt: O.FormatOpt = Format.table, output: O.OutputOpt = None,
) -> None:
    """One convolution worked on small numbers: input, kernels and output as matrices, each chosen output cell as
    its sum of products, what the MAC count counts - checked against torch when it is installed. Keras layout, no
    bias; inputs and outputs up to 8x8, kernels up to 5x5, up to 4 channels."""
    from dscalc.study.explain import explain as study

    _run(ctx, study, **_options(locals()))


@app.command()
def search(
    ctx: typer.Context, space: O.SpaceArg, max_latency: O.MaxLatencyOpt = None, max_params: O.MaxParamsOpt = None,
    max_macs: O.MaxMacsOpt = None, max_memory: O.MaxMemoryOpt = None, axes: O.AxesOpt = None,
    score: O.ScoreOpt = None, metrics: O.MetricsOpt = None, budget: O.BudgetOpt = None, seed: O.SearchSeedOpt = 0,
    top: O.TopOpt = 30, lut: O.LutOpt = None, plot: O.SearchPlotOpt = None, batch: O.BatchOpt = 1,
    optimizer: O.OptimizerOpt = "adam", predict: O.PredictOpt = False, time: O.SearchTimeOpt = False,
    device: O.DeviceOpt = "cpu", threads: O.ThreadsOpt = None, fmt: O.FormatOpt = Format.table,
    output: O.OutputOpt = None,
) -> None:
    """A design space searched: every candidate costed exactly, latency predicted per block, constraints, the
    Pareto front, a score; --time measures the front."""
    from dscalc.study.search import search as study

    def and_write(**options: Any) -> Any:
        result = study(**options)
        from dscalc.report import search as drawn

        if lut is not None:
            drawn.write_lut(result.result, lut)
        if plot is not None:
            drawn.plot(result.result, str(plot))
        return result

    _run(ctx, and_write, **_options(locals(), "and_write"))


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


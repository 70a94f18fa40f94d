"""The `dscalc` command line: thin typer commands over the engine; only this module prints.

Heavy imports (torch, fvcore) happen inside the commands that need them, so `dscalc layer`
starts as fast as Python, typer and rich allow.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dscalc.errors import BadInput, DscalcError
from dscalc.render import Format

app = typer.Typer(
    name="dscalc",
    help="Exact cost of convolutions - params, MACs, FLOPs, bytes - standard vs depthwise-separable.\n\n"
    "Conventions: 1 MAC = one multiply-accumulate; FLOPs = 2 x MACs; bias additions are not MACs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


class Kind(str, Enum):
    standard = "standard"
    grouped = "grouped"
    depthwise = "depthwise"
    pointwise = "pointwise"
    separable = "separable"
    transposed = "transposed"
    linear = "linear"


class Dtype(str, Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    int8 = "int8"


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to FILE (whole, atomically) instead of stdout.",
                              dir_okay=False, metavar="FILE")
]


def parse_per_dim(text: str, option: str) -> int | tuple[int, ...]:
    """'3' -> 3; '3x5' or '3,5' -> (3, 5). A non-number is bad input naming the option."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise BadInput(f"expected an integer or one per dimension like 3x5, got {text!r}", option) from None
    return values[0] if len(values) == 1 else values


def parse_padding(text: str) -> int | str | tuple[int, ...]:
    """'same' | 'valid' | N | NxM."""
    lowered = text.strip().lower()
    if lowered in ("same", "valid"):
        return lowered
    parts = lowered.replace(",", "x").split("x")
    if not all(p.strip().isdigit() for p in parts):
        raise BadInput(f"expected same, valid, N or one per dimension like 1x2, got {text!r}", "padding")
    values = tuple(int(p) for p in parts)
    return values[0] if len(values) == 1 else values


def _deliver(report, fmt: Format, output: Path | None) -> None:
    from dscalc.render import emit, render

    color = output is None and fmt is Format.table and sys.stdout.isatty()
    emit(render(report, fmt, color=color), output)


@app.command()
def layer(
    cin: Annotated[int, typer.Option(help="Input channels (M).", show_default=False)],
    cout: Annotated[int | None, typer.Option(help="Output channels (N); a depthwise conv has cin x depth-multiplier.",
                                             show_default=False)] = None,
    k: Annotated[str | None, typer.Option("--k", help="Kernel size D_K: 3, or one per dimension: 3x5.", metavar="K",
                                          show_default=False)] = None,
    size: Annotated[str | None, typer.Option(help="Input spatial size D_F: 56, or 28x56 (default 56).", metavar="SIZE",
                                             show_default=False)] = None,
    height: Annotated[int | None, typer.Option(help="Input height (2D; with --width).", show_default=False)] = None,
    width: Annotated[int | None, typer.Option(help="Input width (2D; with --height).", show_default=False)] = None,
    stride: Annotated[str, typer.Option(help="Stride: 2, or 1x2.", metavar="S")] = "1",
    padding: Annotated[str, typer.Option(help="same (Keras/TF, out = ceil(in/stride)), valid, N or NxM.",
                                         metavar="P")] = "same",
    dilation: Annotated[str, typer.Option(help="Dilation: 1, or 1x2.", metavar="D")] = "1",
    groups: Annotated[int, typer.Option(help="Groups (C_in and C_out divisible by it).")] = 1,
    depth_multiplier: Annotated[int, typer.Option(help="Depthwise outputs per input channel (Keras).")] = 1,
    output_padding: Annotated[str, typer.Option(help="Transposed conv only: extra output size.", metavar="N")] = "0",
    bias: Annotated[bool, typer.Option("--bias/--no-bias", help="Add a bias (off, as under BatchNorm).")] = False,
    dims: Annotated[int | None, typer.Option(help="1, 2 or 3 spatial dimensions (default: from --size/--k, else 2).",
                                             show_default=False)] = None,
    batch: Annotated[int, typer.Option(help="Batch size B.")] = 1,
    kind: Annotated[Kind | None, typer.Option(help="Layer kind (default: standard, or grouped with --groups).",
                                              case_sensitive=False, show_default=False)] = None,
    dtype: Annotated[Dtype, typer.Option(help="Element type for bytes and intensity.",
                                         case_sensitive=False)] = Dtype.float32,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """One layer, exactly: standard conv vs its depthwise-separable counterpart, side by side."""
    from dscalc import layers
    from dscalc.views import layer_report

    chosen = kind.value if kind else ("grouped" if groups > 1 else "standard")
    k_val = parse_per_dim(k, "k") if k is not None else None
    size_val = parse_per_dim(size, "size") if size is not None else None
    assumptions: list[str] = []
    if height is not None or width is not None:
        if size is not None:
            raise BadInput("give either --size or --height/--width, not both", "size")
        if height is None or width is None:
            raise BadInput("--height and --width go together", "height" if height is None else "width")
        size_val = (height, width)
    if chosen == "linear":
        for name, given in (("k", k), ("size", size_val)):
            if given is not None:
                raise BadInput("does not apply to --kind linear (a linear layer maps cin to cout features)", name)
        if cout is None:
            raise BadInput("is required", "cout")
        result = layers.linear(cin, cout, batch=batch, bias=bias, dtype=dtype.value)
        assumptions.append(f"batch {batch}, {dtype.value}, {'bias' if bias else 'no bias'}")
        _deliver(layer_report(result, None, assumptions), fmt, output)
        return
    if chosen == "pointwise":
        if k_val not in (None, 1) and k_val != (1,) * (len(k_val) if isinstance(k_val, tuple) else 1):
            raise BadInput(f"a pointwise conv has a 1x1 kernel, got {k}", "k")
        k_val = 1
    if k_val is None:
        raise BadInput(f"is required for --kind {chosen}", "k")
    if size_val is None:
        size_val = layers.DEFAULT_SIZE
        assumptions.append(f"default --size {layers.DEFAULT_SIZE}")
    n_dims = dims if dims is not None else layers.infer_dims(size_val, k_val, parse_per_dim(stride, "stride"))
    stride_val = parse_per_dim(stride, "stride")
    dilation_val = parse_per_dim(dilation, "dilation")
    out_pad_val = parse_per_dim(output_padding, "output_padding")
    pad_val = parse_padding(padding)
    common: dict[str, Any] = dict(batch=batch, stride=stride_val, padding=pad_val, dilation=dilation_val, dims=n_dims,
                  dtype=dtype.value)
    if chosen == "depthwise":
        dm = depth_multiplier
        if cout is not None and cout != cin * dm:
            raise BadInput(f"a depthwise conv has cin x depth-multiplier = {cin * dm} outputs, got {cout}", "cout")
        if groups not in (1, cin):
            raise BadInput(f"a depthwise conv has groups = cin = {cin}", "groups")
        result = layers.depthwise(cin, k_val, size_val, depth_multiplier=dm, bias=bias, **common)
    else:
        if cout is None:
            raise BadInput("is required", "cout")
        if chosen in ("standard", "separable", "pointwise") and groups != 1:
            raise BadInput(f"a {chosen} conv has groups 1; use --kind grouped", "groups")
        if chosen == "grouped" and groups == 1:
            raise BadInput("--kind grouped needs --groups > 1", "groups")
        result = layers.conv(cin, cout, k_val, size_val, groups=groups, bias=bias,
                             transposed=chosen == "transposed", output_padding=out_pad_val, **common)
    if depth_multiplier != 1 and chosen not in ("depthwise", "standard", "separable", "grouped"):
        raise BadInput(f"does not apply to --kind {chosen}", "depth_multiplier")
    comparison = layers.separable_of(result, depth_multiplier) if chosen != "depthwise" else None
    assumptions.append(
        f"padding {padding}, batch {batch}, {dtype.value}, {'bias' if bias else 'no bias'}"
        + (", bias on the pointwise part" if bias and comparison else "")
    )
    assumptions.append("MAC = multiply-accumulate, FLOPs = 2 x MACs, FLOP/B = FLOPs per byte moved")
    _deliver(layer_report(result, comparison, assumptions), fmt, output)


class As(str, Enum):
    separable = "separable"
    standard = "standard"


@app.command()
def network(
    name: Annotated[str | None, typer.Argument(help="A built-in network (see --list) or a spec file (.yaml).",
                                               show_default=False)] = None,
    alpha: Annotated[float, typer.Option(help="Width multiplier: channels scaled by the network's rule.")] = 1.0,
    resolution: Annotated[int | None, typer.Option(help="Input resolution rho (default: the network's).",
                                                   show_default=False)] = None,
    as_: Annotated[As | None, typer.Option("--as", help="Every separable pair as a standard conv, or every "
                                           "standard k>1 conv as depthwise + pointwise.", show_default=False)] = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 1,
    dtype: Annotated[Dtype, typer.Option(help="Element type for bytes.", case_sensitive=False)] = Dtype.float32,
    all_layers: Annotated[bool, typer.Option("--all-layers", help="Also show BN, activation, dropout rows.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the built-in networks and exit.")] = False,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """A declared network, layer by layer: params, MACs, share; totals and the paper's Table 2 by kind."""
    from dscalc import network as N
    from dscalc.views import network_report

    if list_:
        for builtin in N.builtin_names():
            spec = N.load(builtin)
            typer.echo(f"{builtin:<18} {spec.description}")
        return
    if name is None:
        raise BadInput("give a built-in network name (see --list) or a spec file", "network")
    spec = N.load(name)
    rows = N.build(spec, alpha=alpha, resolution=resolution, as_=as_.value if as_ else None, batch=batch,
                   dtype=dtype.value)
    meta = {"network": spec.name, "source": spec.source, "alpha": alpha,
            "resolution": resolution if resolution is not None else spec.input[1],
            "as": as_.value if as_ else None, "batch": batch, "dtype": dtype.value}
    _deliver(network_report(rows, meta, all_layers), fmt, output)


class Check(str, Enum):
    fvcore = "fvcore"


@app.command()
def profile(
    model: Annotated[str, typer.Argument(help="path.py[:Name], model.pt (TorchScript), model.pt2 (torch.export), "
                                         "torchvision:NAME or timm:NAME.", show_default=False)],
    input: Annotated[list[str], typer.Option("--input", "-i", help="Input shape, e.g. 1x3x224x224; repeat for "
                                             "several inputs.", show_default=False)],
    depth: Annotated[int | None, typer.Option(help="Collapse module paths to N components.",
                                              show_default=False)] = None,
    check: Annotated[Check | None, typer.Option(help="Cross-check every layer against fvcore (materializes the "
                                                "model on the CPU).", show_default=False)] = None,
    kwargs: Annotated[str | None, typer.Option(help="Constructor keyword arguments as JSON.",
                                               show_default=False)] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow loading a pickled whole model "
                                               "(unpickling can run code).")] = False,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """A real PyTorch model, traced per layer on the meta device (no weights), optionally checked against fvcore."""
    from dscalc import loaders
    from dscalc.profile import check_fvcore, profile_model
    from dscalc.views import profile_report

    if depth is not None and depth < 1:
        raise BadInput(f"must be positive, got {depth}", "depth")
    shapes = [loaders.parse_input(s) for s in input]
    net = loaders.load(model, kwargs=kwargs, trust_pickle=trust_pickle)
    result = profile_model(net, shapes, depth)
    if check is Check.fvcore:
        check_fvcore(result, lambda: loaders.load(model, kwargs=kwargs, trust_pickle=trust_pickle, device="cpu"))
    meta = {"model": model, "depth": depth}
    _deliver(profile_report(result, meta), fmt, output)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line and exit 2 for bad input, exit 1 for a runtime failure."""
    try:
        rv = app(args=argv, prog_name="dscalc", standalone_mode=False)
    except BadInput as e:
        _fail(e.for_cli(), e.exit_code)
    except DscalcError as e:
        _fail(str(e), e.exit_code)
    except typer.TyperException as e:  # click's usage errors: missing option, not an integer, bad choice
        _fail(e.format_message().replace("Value error, ", ""), e.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"dscalc: error: {message}\n")
    sys.exit(code)

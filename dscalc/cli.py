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

APP_SETTINGS: dict[str, Any] = dict(
    name="dscalc",
    help="Exact cost of convolutions - params, MACs, FLOPs, bytes - standard vs depthwise-separable.\n\n"
    "Conventions: 1 MAC = one multiply-accumulate; FLOPs = 2 x MACs; bias additions are not MACs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**APP_SETTINGS)


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
    try:
        return parse_per_dim(lowered, "padding")
    except BadInput:
        raise BadInput(f"expected same, valid, N or one per dimension like 1x2, got {text!r}", "padding") from None


def _deliver(report, fmt: Format, output: Path | None) -> None:
    from dscalc.render import emit, render

    color = output is None and fmt is Format.table and sys.stdout.isatty()
    emit(render(report, fmt, color=color), output)


# ------------------------------------------------------------------------------ options shared by commands

CinOpt = Annotated[int, typer.Option(help="Input channels (M).", show_default=False)]
CoutOpt = Annotated[int | None, typer.Option(help="Output channels (N); a depthwise conv has cin x "
                                             "depth-multiplier.", show_default=False)]
KOpt = Annotated[str | None, typer.Option("--k", help="Kernel size D_K: 3, or one per dimension: 3x5.", metavar="K",
                                          show_default=False)]
SizeOpt = Annotated[str | None, typer.Option(help="Input spatial size D_F: 56, or 28x56 (default 56).",
                                             metavar="SIZE", show_default=False)]
HeightOpt = Annotated[int | None, typer.Option(help="Input height (2D; with --width).", show_default=False)]
WidthOpt = Annotated[int | None, typer.Option(help="Input width (2D; with --height).", show_default=False)]
StrideOpt = Annotated[str, typer.Option(help="Stride: 2, or 1x2.", metavar="S")]
PaddingOpt = Annotated[str, typer.Option(help="same (Keras/TF, out = ceil(in/stride)), valid, N or NxM.",
                                         metavar="P")]
DilationOpt = Annotated[str, typer.Option(help="Dilation: 1, or 1x2.", metavar="D")]
GroupsOpt = Annotated[int, typer.Option(help="Groups (C_in and C_out divisible by it).")]
DmOpt = Annotated[int, typer.Option(help="Depthwise outputs per input channel (Keras).")]
OutPadOpt = Annotated[str, typer.Option(help="Transposed conv only: extra output size.", metavar="N")]
BiasOpt = Annotated[bool, typer.Option("--bias/--no-bias", help="Add a bias (off, as under BatchNorm).")]
DimsOpt = Annotated[int | None, typer.Option(help="1, 2 or 3 spatial dimensions (default: from --size/--k, else 2).",
                                             show_default=False)]
BatchOpt = Annotated[int, typer.Option(help="Batch size B.")]
KindOpt = Annotated[Kind | None, typer.Option(help="Layer kind (default: standard, or grouped with --groups).",
                                              case_sensitive=False, show_default=False)]
DtypeOpt = Annotated[Dtype, typer.Option(help="Element type for bytes, intensity and timing.", case_sensitive=False)]
TimeOpt = Annotated[bool, typer.Option("--time", help="Also measure latency (torch.utils.benchmark) and predict it "
                                       "from the device's ceilings (roofline).")]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda, for --time.", metavar="cpu|cuda")]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="Time in channels-last memory format.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="CPU threads for timing (default: torch's).",
                                                show_default=False)]
Tf32Opt = Annotated[bool, typer.Option("--tf32/--no-tf32", help="Allow TF32 matmul/conv on CUDA.")]


def build_layer(
    *, cin: int, cout: int | None, k: str | None, size: str | None, height: int | None, width: int | None,
    stride: str, padding: str, dilation: str, groups: int, depth_multiplier: int, output_padding: str,
    bias: bool, dims: int | None, batch: int, kind: Kind | None, dtype: Dtype,
) -> tuple[Any, Any, list[str]]:
    """The layer the options describe, its separable counterpart (or None), and the assumptions made."""
    from dscalc import layers

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
        return result, None, assumptions
    if chosen == "pointwise":
        if k_val not in (None, 1) and k_val != (1,) * (len(k_val) if isinstance(k_val, tuple) else 1):
            raise BadInput(f"a pointwise conv has a 1x1 kernel, got {k}", "k")
        k_val = 1
    if k_val is None:
        raise BadInput(f"is required for --kind {chosen}", "k")
    if size_val is None:
        size_val = layers.DEFAULT_SIZE
        assumptions.append(f"default --size {layers.DEFAULT_SIZE}")
    stride_val = parse_per_dim(stride, "stride")
    n_dims = dims if dims is not None else layers.infer_dims(size_val, k_val, stride_val)
    common: dict[str, Any] = dict(batch=batch, stride=stride_val, padding=parse_padding(padding),
                                  dilation=parse_per_dim(dilation, "dilation"), dims=n_dims, dtype=dtype.value)
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
        result = layers.conv(cin, cout, k_val, size_val, groups=groups, bias=bias, transposed=chosen == "transposed",
                             output_padding=parse_per_dim(output_padding, "output_padding"), **common)
    if depth_multiplier != 1 and chosen not in ("depthwise", "standard", "separable", "grouped"):
        raise BadInput(f"does not apply to --kind {chosen}", "depth_multiplier")
    comparison = layers.separable_of(result, depth_multiplier) if chosen != "depthwise" else None
    assumptions.append(
        f"padding {padding}, batch {batch}, {dtype.value}, {'bias' if bias else 'no bias'}"
        + (", bias on the pointwise part" if bias and comparison else "")
    )
    assumptions.append("MAC = multiply-accumulate, FLOPs = 2 x MACs, FLOP/B = FLOPs per byte moved")
    return result, comparison, assumptions


def timing_settings(device: str, dtype: Dtype, channels_last: bool, threads: int | None, tf32: bool) -> Any:
    """Checked timing settings (CUDA missing: exit 1 with one line)."""
    from dscalc import timing

    timing.check_device(device)
    if dtype is Dtype.int8:
        raise BadInput("timing runs float32, float16 or bfloat16", "dtype")
    if threads is not None and threads < 1:
        raise BadInput(f"must be positive, got {threads}", "threads")
    return timing.Settings(device=device, dtype=dtype.value, channels_last=channels_last, threads=threads, tf32=tf32)


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


@app.command()
def layer(
    cin: CinOpt, cout: CoutOpt = None, k: KOpt = None, size: SizeOpt = None, height: HeightOpt = None,
    width: WidthOpt = None, stride: StrideOpt = "1", padding: PaddingOpt = "same", dilation: DilationOpt = "1",
    groups: GroupsOpt = 1, depth_multiplier: DmOpt = 1, output_padding: OutPadOpt = "0", bias: BiasOpt = False,
    dims: DimsOpt = None, batch: BatchOpt = 1, kind: KindOpt = None, dtype: DtypeOpt = Dtype.float32,
    time: TimeOpt = False, device: DeviceOpt = "cpu", channels_last: ChannelsLastOpt = False,
    threads: ThreadsOpt = None, tf32: Tf32Opt = False, fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """One layer, exactly: standard conv vs its depthwise-separable counterpart, side by side."""
    from dscalc.views import layer_report

    result, comparison, assumptions = build_layer(
        cin=cin, cout=cout, k=k, size=size, height=height, width=width, stride=stride, padding=padding,
        dilation=dilation, groups=groups, depth_multiplier=depth_multiplier, output_padding=output_padding,
        bias=bias, dims=dims, batch=batch, kind=kind, dtype=dtype)
    report = layer_report(result, comparison, assumptions)
    if time:
        from dscalc.compare import add_layer_latency

        settings = timing_settings(device, dtype, channels_last, threads, tf32)
        with _progress("measuring device ceilings and latency"):
            add_layer_latency(report, result, comparison, settings, device)
    _deliver(report, fmt, output)


class As(str, Enum):
    separable = "separable"
    standard = "standard"


@app.command()
def network(
    name: Annotated[str | None, typer.Argument(metavar="NETWORK",
                                               help="A built-in network (see --list) or a spec file (.yaml).",
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
    time: TimeOpt = False, device: DeviceOpt = "cpu", channels_last: ChannelsLastOpt = False,
    threads: ThreadsOpt = None, tf32: Tf32Opt = False,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """A declared network, layer by layer: params, MACs, share; totals and the paper's Table 2 by kind."""
    from dscalc import network as N
    from dscalc.views import network_report

    if list_:
        from dscalc.views import builtins_report

        _deliver(builtins_report([N.load(b) for b in N.builtin_names()]), fmt, output)
        return
    if name is None:
        raise BadInput("give a built-in network name (see --list) or a spec file", "network")
    spec = N.load(name)
    rows = N.build(spec, alpha=alpha, resolution=resolution, as_=as_.value if as_ else None, batch=batch,
                   dtype=dtype.value)
    meta = {"network": spec.name, "source": spec.source, "alpha": alpha,
            "resolution": resolution if resolution is not None else spec.input[1],
            "as": as_.value if as_ else None, "batch": batch, "dtype": dtype.value}
    latency = None
    if time:
        from dscalc.compare import time_rows

        settings = timing_settings(device, dtype, channels_last, threads, tf32)
        with _progress("timing every conv and linear layer"):
            latency = {lat.name: lat for lat in time_rows(rows, settings, device)}
    _deliver(network_report(rows, meta, all_layers, latency), fmt, output)


class Check(str, Enum):
    fvcore = "fvcore"


@app.command()
def profile(
    model: Annotated[str, typer.Argument(metavar="MODEL",
                                         help="path.py[:Name], model.pt (TorchScript), model.pt2 (torch.export), "
                                         "torchvision:NAME or timm:NAME.", show_default=False)],
    input: Annotated[list[str], typer.Option("--input", "-i", metavar="SHAPE",
                                             help="Input shape, e.g. 1x3x224x224; repeat for "
                                             "several inputs.", show_default=False)],
    depth: Annotated[int | None, typer.Option(help="Collapse module paths to N components.",
                                              show_default=False)] = None,
    check: Annotated[Check | None, typer.Option(help="Cross-check every layer against fvcore (materializes the "
                                                "model on the CPU).", show_default=False)] = None,
    kwargs: Annotated[str | None, typer.Option(help="Constructor keyword arguments as JSON.",
                                               show_default=False)] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow loading a pickled whole model "
                                               "(unpickling can run code).")] = False,
    time: TimeOpt = False, device: DeviceOpt = "cpu", dtype: DtypeOpt = Dtype.float32,
    channels_last: ChannelsLastOpt = False, threads: ThreadsOpt = None, tf32: Tf32Opt = False,
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
    report = profile_report(result, meta)
    if time:
        from dscalc.compare import time_model, time_rows
        from dscalc.views import profile_latency_grid

        settings = timing_settings(device, dtype, channels_last, threads, tf32)
        with _progress("timing the model and its layers"):
            per_layer = time_rows(result.layers, settings, device, pairs=True)
            end_to_end = time_model(model, kwargs, shapes, settings)
        report.grids.append(profile_latency_grid(per_layer, end_to_end, settings))
        report.data["timing"] = {"end_to_end": end_to_end.to_dict(),
                                 "layers": [lat.to_dict() for lat in per_layer]}
    _deliver(report, fmt, output)


@app.command("device")
def device_cmd(
    device: Annotated[str, typer.Option(help="cpu or cuda.", metavar="cpu|cuda")] = "cpu",
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again instead of using the cache.")] = False,
    threads: ThreadsOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """Measured ceilings of this CPU/GPU: peak matmul FLOP/s per dtype, copy bandwidth, launch floor (cached)."""
    from dscalc import device as D
    from dscalc import timing

    timing.check_device(device)
    with _progress(f"measuring {device} ceilings"):
        ceilings, cached = D.get_ceilings(device, refresh=refresh, threads=threads)
    _deliver(D.ceilings_report(ceilings, cached), fmt, output)


@app.command()
def compare(
    target: Annotated[str | None, typer.Argument(
        metavar="TARGET", help="Nothing (a layer from the options), a network (built-in or "
                                                 ".yaml) or a model (.py, .pt, .pt2, torchvision:NAME).",
                                                 show_default=False)] = None,
    cin: Annotated[int | None, typer.Option(help="Input channels (layer).", show_default=False)] = None,
    cout: CoutOpt = None, k: KOpt = None, size: SizeOpt = None, height: HeightOpt = None,
    width: WidthOpt = None, stride: StrideOpt = "1", padding: PaddingOpt = "same", dilation: DilationOpt = "1",
    groups: GroupsOpt = 1, depth_multiplier: DmOpt = 1, bias: BiasOpt = False, dims: DimsOpt = None,
    batch: BatchOpt = 1, dtype: DtypeOpt = Dtype.float32,
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="Model input shape(s).", metavar="SHAPE",
                                                    show_default=False)] = None,
    alpha: Annotated[float, typer.Option(help="Network width multiplier.")] = 1.0,
    resolution: Annotated[int | None, typer.Option(help="Network input resolution.", show_default=False)] = None,
    as_: Annotated[As, typer.Option("--as", help="The variant to compare with (networks).")] = As.separable,
    time: TimeOpt = False, device: DeviceOpt = "cpu", channels_last: ChannelsLastOpt = False,
    threads: ThreadsOpt = None, tf32: Tf32Opt = False, fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """The original and its separable (or standard) variant side by side: params, MACs, predicted and measured."""
    from dscalc import compare as C

    settings = timing_settings(device, dtype, channels_last, threads, tf32) if time else None
    if target is None:
        if cin is None:
            raise BadInput("give a layer (--cin, --cout, --k ...), a network or a model to compare", "cin")
        result, comparison, assumptions = build_layer(
            cin=cin, cout=cout, k=k, size=size, height=height, width=width, stride=stride, padding=padding,
            dilation=dilation, groups=groups, depth_multiplier=depth_multiplier, output_padding="0", bias=bias,
            dims=dims, batch=batch, kind=None, dtype=dtype)
        if comparison is None:
            raise BadInput("a 1x1 conv has no depthwise-separable counterpart", "k")
        from dscalc.views import layer_report

        report = layer_report(result, comparison, assumptions)
        report.data["command"] = "compare"
        with _progress("predicting and measuring"):
            C.add_layer_latency(report, result, comparison, settings, device)
    elif C.is_model(target):
        if not input:
            raise BadInput("is required to compare a model", "input")
        with _progress("tracing and measuring"):
            report = C.model_comparison(target, input, settings, device)
    else:
        with _progress("costing and measuring"):
            report = C.network_comparison(target, alpha, resolution, as_.value, batch, dtype.value, settings, device)
    _deliver(report, fmt, output)


@app.command()
def sweep(
    cin: Annotated[str, typer.Option(help="Input channels: 32,64 or 32:512:x2.")] = "32:512:x2",
    cout: Annotated[str | None, typer.Option(help="Output channels (default: equal to cin).",
                                             show_default=False)] = None,
    k: Annotated[str, typer.Option("--k", help="Kernel sizes.")] = "3",
    size: Annotated[str, typer.Option(help="Input sizes.")] = "56",
    batch: Annotated[str, typer.Option(help="Batch sizes.")] = "1",
    dtype: Annotated[str, typer.Option(help="Dtypes: float32,float16,bfloat16.")] = "float32",
    channels_last: Annotated[str, typer.Option("--channels-last", help="no, yes or both.")] = "no",
    time: Annotated[bool, typer.Option("--time/--no-time", help="Measure (default) or only predict.")] = True,
    device: DeviceOpt = "cpu", threads: ThreadsOpt = None, tf32: Tf32Opt = False,
    plot: Annotated[Path | None, typer.Option(help="Draw the sweep to FILE.png or FILE.svg (matplotlib).",
                                              show_default=False, dir_okay=False)] = None,
    fmt: FormatOpt = Format.table, output: OutputOpt = None,
) -> None:
    """A grid of 3x3 (or --k) configs: MAC, predicted and measured speedup; where separable actually wins."""
    from dscalc import device as D
    from dscalc import sweep as S
    from dscalc import timing

    cins = S.parse_values(cin, "cin")
    couts = S.parse_values(cout, "cout") if cout else None
    ks, sizes, batches = S.parse_values(k, "k"), S.parse_values(size, "size"), S.parse_values(batch, "batch")
    dtypes = [d.strip() for d in dtype.split(",")]
    for d in dtypes:
        if d not in timing.DTYPES:
            raise BadInput(f"expected float32, float16 or bfloat16, got {d!r}", "dtype")
    formats = {"no": [False], "yes": [True], "both": [False, True]}.get(channels_last)
    if formats is None:
        raise BadInput(f"expected no, yes or both, got {channels_last!r}", "channels_last")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise BadInput(f"expected a .png or .svg file, got {plot}", "plot")
    base = timing_settings(device, Dtype.float32, False, threads, tf32)  # checks device and threads
    settings = base if time else None
    total = len(cins) * len(couts or [0]) * len(ks) * len(sizes) * len(batches) * len(dtypes) * len(formats)
    ceilings, _ = D.get_ceilings(device, threads=threads)
    with _bar(total, "sweeping") as advance:
        rows = S.run(cins, couts, ks, sizes, batches, dtypes, formats, settings, ceilings, advance)
    if plot is not None:
        S.plot(rows, str(plot))
    context = timing.describe(base)
    _deliver(S.report(rows, {**context, "measured": time}), fmt, output)


class _bar:
    """A rich progress bar on stderr (only on a terminal); yields the function that advances it."""

    def __init__(self, total: int, text: str) -> None:
        self.total, self.text = total, text
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
    """Console-script entry point: one clear line and exit 2 for bad input, exit 1 for a runtime failure."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = _app_for(args)(args=args, prog_name="dscalc", standalone_mode=False)
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

"""The cost engine: exact cost of one layer from its shapes alone. Pure Python, no torch.

These are the functions every layer kind builds on (`dscalc.cost.kinds`) and the documented Python API::

    >>> from dscalc import conv, separable_of
    >>> std = conv(512, 512, 3, 14, padding="same")
    >>> std.macs, separable_of(std).macs
    (462422016, 52283392)

Arguments mirror the command line: ``cin``, ``cout``, ``k``, ``size``; a per-dimension value is an
int (the same on every dimension) or a tuple (one per dimension, outermost first).
"""

from __future__ import annotations

from collections.abc import Sequence

from dscalc.cost import formulas as F
from dscalc.cost.dtypes import check as check_dtype
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput

PerDim = int | Sequence[int]
Padding = int | str | Sequence[int] | Sequence[Sequence[int]]

DEFAULT_SIZE = 56

#: the largest size, channel count, kernel, stride or batch accepted: every count stays a Python int, and
#: every figure derived from one (shares, intensities, times) stays inside a float's range
MAX_VALUE = 2**31 - 1


def per_dim(value: PerDim, dims: int, option: str, minimum: int = 1) -> tuple[int, ...]:
    """Expand an int or a per-dimension sequence into a `dims`-tuple, checking each value >= minimum."""
    if not isinstance(value, (int, tuple, list)):
        raise BadInput(f"expected an integer or one per dimension, got {value!r:.40}", option)
    values = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(values) != dims:
        raise BadInput(f"expected 1 or {dims} values for a {dims}D layer, got {len(values)}", option)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise BadInput(f"expected an integer, got {v!r}", option)
        if v < minimum:
            rule = "positive" if minimum == 1 else f">= {minimum}"
            raise BadInput(f"must be {rule}, got {v}", option)
        if v > MAX_VALUE:
            raise BadInput(f"must be at most {MAX_VALUE:,}, got {v:.3g}" if v > 10**15 else
                           f"must be at most {MAX_VALUE:,}, got {v:,}", option)
    return values


def positive(value: int, option: str) -> int:
    """Check one positive integer."""
    return per_dim(value, 1, option)[0]


def infer_dims(*values: object, default: int = 2) -> int:
    """Dimensionality from the first per-dimension tuple among `values`, else `default`."""
    for v in values:
        if isinstance(v, (tuple, list)) and v and not isinstance(v[0], (tuple, list)):
            return len(v)
    return default


def _padding(
    padding: Padding, size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
    dilation: tuple[int, ...], transposed: bool,
) -> tuple[tuple[int, int], ...]:
    """Resolve 'same' / 'valid' / N / per-dim / per-dim (before, after) into (before, after) pairs."""
    dims = len(size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * dims
        if padding == "same":
            if transposed:
                return tuple(F.transposed_same_padding(k, s, d) for k, s, d in zip(kernel, stride, dilation))
            return tuple(F.same_padding(n, k, s, d) for n, k, s, d in zip(size, kernel, stride, dilation))
        raise BadInput(f"expected 'same', 'valid' or a non-negative integer, got {padding!r:.40}", "padding")
    if isinstance(padding, bool) or not isinstance(padding, (int, tuple, list)):
        raise BadInput(f"expected 'same', 'valid', an integer, one per dimension or (before, after) pairs, got "
                       f"{padding!r:.40}", "padding")
    if not isinstance(padding, int) and padding and isinstance(padding[0], (tuple, list)):
        pairs = tuple(tuple(p) for p in padding)
        if len(pairs) != dims or any(len(p) != 2 for p in pairs):
            raise BadInput(f"expected {dims} (before, after) pairs", "padding")
        for p in pairs:
            per_dim(tuple(p), 2, "padding", minimum=0)
        return pairs
    flat = per_dim(padding, dims, "padding", minimum=0)
    return tuple((p, p) for p in flat)


def _window_output(spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
                   pads: tuple[tuple[int, int], ...], dilations: tuple[int, ...]) -> tuple[int, ...]:
    """Output size of a sliding window (convolution or pooling), checking it fits in the padded input."""
    for n, kk, (pb, pa), d in zip(spatial, kernel, pads, dilations):
        extent = d * (kk - 1) + 1
        if extent > n + pb + pa:
            what = f"kernel {kk}" + (f" (dilated extent {extent})" if d > 1 else "")
            raise BadInput(f"{what} is larger than the padded input {n + pb + pa} ({n} + padding {pb + pa})", "k")
    return tuple(F.conv_output_length(n, kk, s, pb, pa, d)
                 for n, kk, s, (pb, pa), d in zip(spatial, kernel, strides, pads, dilations))


def conv_kind(cin: int, cout: int, kernel: Sequence[int], groups: int) -> str:
    """Classify a convolution by its weight shape: pointwise, depthwise, grouped or standard."""
    if groups == 1:
        return "pointwise" if all(k == 1 for k in kernel) else "standard"
    if groups == cin and cout % cin == 0:
        return "depthwise"
    return "grouped"


def conv(
    cin: int,
    cout: int,
    k: PerDim,
    size: PerDim = DEFAULT_SIZE,
    *,
    batch: int = 1,
    stride: PerDim = 1,
    padding: Padding = 0,
    dilation: PerDim = 1,
    groups: int = 1,
    bias: bool = False,
    transposed: bool = False,
    output_padding: PerDim = 0,
    dims: int | None = None,
    dtype: str = "float32",
    name: str | None = None,
) -> LayerCost:
    """Cost of a (possibly grouped, depthwise, pointwise, dilated or transposed) 1D/2D/3D convolution."""
    if dims is None:
        dims = infer_dims(size, k, stride, dilation, padding)
    if dims not in (1, 2, 3):
        raise BadInput(f"must be 1, 2 or 3, got {dims}", "dims")
    cin, cout = positive(cin, "cin"), positive(cout, "cout")
    batch, groups = positive(batch, "batch"), positive(groups, "groups")
    spatial = per_dim(size, dims, "size")
    kernel = per_dim(k, dims, "k")
    strides = per_dim(stride, dims, "stride")
    dilations = per_dim(dilation, dims, "dilation")
    out_pad = per_dim(output_padding, dims, "output_padding", minimum=0)
    if cin % groups:
        raise BadInput(f"{cin} input channels are not divisible by groups={groups}", "cin")
    if cout % groups:
        raise BadInput(f"{cout} output channels are not divisible by groups={groups}", "cout")
    pads = _padding(padding, spatial, kernel, strides, dilations, transposed)
    if transposed:
        for op, s, d in zip(out_pad, strides, dilations):
            if op >= max(s, d):
                raise BadInput(f"{op} must be smaller than stride or dilation (PyTorch's rule)", "output_padding")
        if padding == "same":  # Keras: out = in * s; a kernel shorter than the stride needs output padding
            if any(out_pad):
                raise BadInput("cannot be combined with padding 'same' (the default), which already makes the "
                               "output exactly input x stride; give an explicit padding (e.g. 1) to use it",
                               "output_padding")
            out_pad = tuple(max(s - d * (kk - 1) - 1, 0) for kk, s, d in zip(kernel, strides, dilations))
        out = tuple(
            F.transposed_output_length(n, kk, s, pb, pa, d, op)
            for n, kk, s, (pb, pa), d, op in zip(spatial, kernel, strides, pads, dilations, out_pad)
        )
        if any(o < 1 for o in out):
            raise BadInput(f"crops away the whole output (size {'x'.join(map(str, out))} would be left)", "padding")
        weight_shape = F.transposed_weight_shape(cin, cout, kernel, groups)
        macs = F.transposed_conv_macs(weight_shape, spatial, batch)
        kind = "transposed"
    else:
        if any(op for op in out_pad):
            raise BadInput("only applies to a transposed convolution", "output_padding")
        out = _window_output(spatial, kernel, strides, pads, dilations)
        weight_shape = F.conv_weight_shape(cin, cout, kernel, groups)
        macs = F.conv_macs(weight_shape, out, batch)
        kind = conv_kind(cin, cout, kernel, groups)
    return LayerCost(
        name=name or kind,
        kind=kind,
        input_shape=(batch, cin, *spatial),
        output_shape=(batch, cout, *out),
        weights=F.numel(weight_shape),
        bias=cout if bias else 0,
        macs=macs,
        dtype=_check_dtype(dtype),
        weight_shape=weight_shape,
        kernel=kernel,
        stride=strides,
        padding=pads,
        dilation=dilations,
        groups=groups,
        extra={"output_padding": list(out_pad)} if transposed else {},
    )


def depthwise(cin: int, k: PerDim, size: PerDim = DEFAULT_SIZE, *, depth_multiplier: int = 1, **kw) -> LayerCost:
    """Depthwise conv: groups = cin, cin * depth_multiplier outputs (Keras DepthwiseConv2D)."""
    depth_multiplier = positive(depth_multiplier, "depth_multiplier")
    return conv(cin, cin * depth_multiplier, k, size, groups=cin, **kw)


def pointwise(cin: int, cout: int, size: PerDim = DEFAULT_SIZE, **kw) -> LayerCost:
    """Pointwise (1x1) conv: the channel-mixing half of a separable conv."""
    dims = kw.pop("dims", None) or infer_dims(size)
    return conv(cin, cout, 1, size, dims=dims, **kw)


def linear(cin: int, cout: int, *, batch: int = 1, bias: bool = True, dtype: str = "float32",
           name: str | None = None) -> LayerCost:
    """Linear (dense) layer on a batch of cin-vectors: batch * cin * cout MACs."""
    cin, cout, batch = positive(cin, "cin"), positive(cout, "cout"), positive(batch, "batch")
    return LayerCost(
        name=name or "linear",
        kind="linear",
        input_shape=(batch, cin),
        output_shape=(batch, cout),
        weights=cin * cout,
        bias=cout if bias else 0,
        macs=F.linear_macs(cin, cout, batch),
        dtype=_check_dtype(dtype),
        weight_shape=(cout, cin),
    )


def pool(cin: int, k: PerDim, size: PerDim, *, kind: str = "maxpool", stride: PerDim | None = None,
         padding: Padding = "valid", batch: int = 1, dtype: str = "float32", name: str | None = None) -> LayerCost:
    """Max or average pooling: the convolution's window geometry, no weights, no MACs (stride defaults to k)."""
    dims = infer_dims(size, k, stride)
    spatial, kernel = per_dim(size, dims, "size"), per_dim(k, dims, "k")
    strides = per_dim(stride if stride is not None else kernel, dims, "stride")
    dilations = (1,) * dims
    pads = _padding(padding, spatial, kernel, strides, dilations, transposed=False)
    out = _window_output(spatial, kernel, strides, pads, dilations)
    return LayerCost(name=name or kind, kind=kind, input_shape=(batch, cin, *spatial), output_shape=(batch, cin, *out),
                     dtype=_check_dtype(dtype), kernel=kernel, stride=strides, padding=pads, dilation=dilations)


def _check_dtype(dtype: str) -> str:
    return check_dtype(dtype).name

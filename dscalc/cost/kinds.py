"""The layer kinds, in one registry: each kind declares how it is costed, how it is labelled, its closed form,
the options it takes (command line and spec file), whether it has a depthwise-separable counterpart, and how to
build it as a torch module for timing. A new kind is one entry here plus its tests.

No torch is imported here: a kind's `module` builder is handed `torch.nn` by the timer that calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dscalc.cost import formulas as F
from dscalc.cost import layers as L
from dscalc.cost.records import LayerCost, SeparableComparison

_SUP = {1: "", 2: "²", 3: "³"}


@dataclass(frozen=True)
class LayerArgs:
    """Every argument a layer kind can take, already parsed (ints or per-dimension tuples)."""

    cin: int
    cout: int | None = None
    k: Any = None
    size: Any = L.DEFAULT_SIZE
    stride: Any = 1
    padding: Any = "same"
    dilation: Any = 1
    groups: int = 1
    depth_multiplier: int = 1
    output_padding: Any = 0
    bias: bool = False
    dims: int | None = None
    batch: int = 1
    dtype: str = "float32"
    name: str | None = None


@dataclass(frozen=True)
class Kind:
    """One layer kind: everything dscalc needs to cost, show, declare, convert and time it."""

    name: str  # the --kind value and the `kind` of the rows it produces
    help: str  # one line, for --help and the docs
    short: str  # the network table's type column
    paper: str  # the MobileNets paper's Table 2 label
    spec_key: str  # the spec-file layer type that declares it (`conv` declares standard and grouped convs)
    spec_options: frozenset[str]  # the options it takes in a spec file
    options: frozenset[str]  # the command-line options (LayerArgs fields) it takes besides cin, batch, dtype
    build: Callable[[LayerArgs], list[LayerCost]]
    formula: Callable[[LayerCost], tuple[str, str]] | None = None  # closed form: symbolic, with numbers
    separable: bool = False  # a k > 1 layer of this kind has a depthwise + pointwise counterpart
    module: Callable[[LayerCost, Any], Any] | None = None  # (layer, torch.nn) -> nn.Module, for timing
    note: str = ""  # why options outside `options` do not apply


# ------------------------------------------------------------------------------------------ closed forms

def _power(values: tuple[int, ...]) -> str:
    """56² for (56, 56), 28·56 for (28, 56), 7 for (7,)."""
    if len(set(values)) == 1:
        return f"{values[0]}{_SUP[len(values)]}"
    return "·".join(map(str, values))


def _batch(layer: LayerCost) -> tuple[str, str]:
    batch = layer.input_shape[0]
    return ("B·", f"{batch}·") if batch > 1 else ("", "")


def _standard_formula(layer: LayerCost) -> tuple[str, str]:
    (b_sym, b_num), sup = _batch(layer), _SUP[len(layer.kernel)]
    cin, cout = layer.input_shape[1], layer.output_shape[1]
    k, out = _power(layer.kernel), _power(layer.output_shape[2:])
    return f"{b_sym}D_K{sup}·M·N·D_F{sup}", f"{b_num}{k}·{cin}·{cout}·{out}"


def _grouped_formula(layer: LayerCost) -> tuple[str, str]:
    (b_sym, b_num), sup = _batch(layer), _SUP[len(layer.kernel)]
    cin, cout, g = layer.input_shape[1], layer.output_shape[1], layer.groups
    return (f"{b_sym}D_K{sup}·(M/g)·N·D_F{sup}",
            f"{b_num}{_power(layer.kernel)}·({cin}/{g})·{cout}·{_power(layer.output_shape[2:])}")


def _depthwise_formula(layer: LayerCost) -> tuple[str, str]:
    (b_sym, b_num), sup = _batch(layer), _SUP[len(layer.kernel)]
    cin = layer.input_shape[1]
    dm = layer.output_shape[1] // cin
    return (f"{b_sym}D_K{sup}·M·D_F{sup}" + ("·dm" if dm > 1 else ""),
            f"{b_num}{_power(layer.kernel)}·{cin}·{_power(layer.output_shape[2:])}" + (f"·{dm}" if dm > 1 else ""))


def _pointwise_formula(layer: LayerCost) -> tuple[str, str]:
    (b_sym, b_num), sup = _batch(layer), _SUP[len(layer.kernel)]
    return (f"{b_sym}M·N·D_F{sup}",
            f"{b_num}{layer.input_shape[1]}·{layer.output_shape[1]}·{_power(layer.output_shape[2:])}")


def _transposed_formula(layer: LayerCost) -> tuple[str, str]:
    (b_sym, b_num), sup = _batch(layer), _SUP[len(layer.kernel)]
    cin, cout, g = layer.input_shape[1], layer.output_shape[1], layer.groups
    m, mn = ("(N/g)", f"({cout}/{g})") if g > 1 else ("N", f"{cout}")
    return (f"{b_sym}M·{m}·D_K{sup}·D_in{sup}",
            f"{b_num}{cin}·{mn}·{_power(layer.kernel)}·{_power(layer.input_shape[2:])}")


def _linear_formula(layer: LayerCost) -> tuple[str, str]:
    b_sym, b_num = _batch(layer)
    return f"{b_sym}M·N", f"{b_num}{layer.input_shape[1]}·{layer.output_shape[1]}"


def separable_formula(pair: SeparableComparison) -> tuple[str, str]:
    """The closed-form ratio: dm·(1/N + 1/D_K²), symbolic and with numbers (g· in front for a grouped conv)."""
    layer, dw = pair.original, pair.depthwise
    dm, g = dw.output_shape[1] // dw.input_shape[1], layer.groups
    scale_sym = ("dm·" if dm > 1 else "") + ("g·" if g > 1 else "")
    scale_num = (f"{dm}·" if dm > 1 else "") + (f"{g}·" if g > 1 else "")
    sym, num = f"1/N + 1/D_K{_SUP[len(layer.kernel)]}", f"1/{layer.output_shape[1]} + 1/{_power(layer.kernel)}"
    return (f"{scale_sym}({sym})", f"{scale_num}({num})") if scale_sym else (sym, num)


# ---------------------------------------------------------------------------------------- torch modules

def _conv_module(layer: LayerCost, nn: Any) -> Any:
    """nn.ConvNd with the layer's geometry; asymmetric padding ('same' on even sizes) as an explicit pad first."""
    dims = len(layer.kernel)
    cin, cout = layer.input_shape[1], layer.output_shape[1]
    cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    kw: dict[str, Any] = dict(stride=layer.stride, dilation=layer.dilation, groups=layer.groups, bias=layer.bias > 0)
    if all(a == b for a, b in layer.padding):
        return cls(cin, cout, layer.kernel, padding=tuple(a for a, _ in layer.padding), **kw)
    flat = tuple(p for pair in reversed(layer.padding) for p in pair)
    pad = (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d)[dims - 1](flat)
    return nn.Sequential(pad, cls(cin, cout, layer.kernel, padding=0, **kw))


def _transposed_module(layer: LayerCost, nn: Any) -> Any:
    """nn.ConvTransposeNd; an asymmetric crop is timed at its larger side (the cost of the kernel is the same)."""
    dims = len(layer.kernel)
    cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1]
    return cls(layer.input_shape[1], layer.output_shape[1], layer.kernel, stride=layer.stride,
               padding=tuple(max(p) for p in layer.padding), output_padding=tuple(layer.extra["output_padding"]),
               dilation=layer.dilation, groups=layer.groups, bias=layer.bias > 0)


def _linear_module(layer: LayerCost, nn: Any) -> Any:
    return nn.Linear(layer.input_shape[1], layer.output_shape[1], bias=layer.bias > 0)


# ------------------------------------------------------------------------------------------------ costs

def _geometry(a: LayerArgs) -> dict[str, Any]:
    return dict(batch=a.batch, stride=a.stride, padding=a.padding, dilation=a.dilation, dims=a.dims, dtype=a.dtype,
                bias=a.bias, name=a.name)


def _conv(a: LayerArgs) -> list[LayerCost]:
    assert a.cout is not None
    return [L.conv(a.cin, a.cout, a.k, a.size, groups=a.groups, **_geometry(a))]


def _depthwise(a: LayerArgs) -> list[LayerCost]:
    return [L.depthwise(a.cin, a.k, a.size, depth_multiplier=a.depth_multiplier, **_geometry(a))]


def _pointwise(a: LayerArgs) -> list[LayerCost]:
    assert a.cout is not None
    return [L.conv(a.cin, a.cout, 1, a.size, **_geometry(a))]


def _separable(a: LayerArgs) -> list[LayerCost]:
    """Keras SeparableConv2D: a depthwise conv, then a pointwise conv that carries the one bias."""
    assert a.cout is not None
    geo = _geometry(a)
    name = geo.pop("name")
    bias = geo.pop("bias")
    dw = L.depthwise(a.cin, a.k, a.size, depth_multiplier=a.depth_multiplier, bias=False,
                     name=f"{name}.dw" if name else None, **geo)
    pw = L.conv(a.cin * a.depth_multiplier, a.cout, 1, dw.output_shape[2:], batch=a.batch, dims=a.dims, dtype=a.dtype,
                bias=bias, name=f"{name}.pw" if name else None)
    return [dw, pw]


def _transposed(a: LayerArgs) -> list[LayerCost]:
    assert a.cout is not None
    return [L.conv(a.cin, a.cout, a.k, a.size, groups=a.groups, transposed=True, output_padding=a.output_padding,
                   **_geometry(a))]


def _linear(a: LayerArgs) -> list[LayerCost]:
    """A dense layer on `batch` vectors of cin features, or (a `size` map) on every position of each sample's
    channels-last map (a tuple `size`, which only `spec.LayerSpec` passes): batch x H x W rows - what a 1x1 conv
    costs. A network's dense layer (the default, untupled size) is fed flat vectors."""
    assert a.cout is not None
    rows = a.batch * (math.prod(a.size) if isinstance(a.size, tuple) else 1)
    return [L.linear(a.cin, a.cout, batch=rows, bias=a.bias, dtype=a.dtype, name=a.name)]


_WINDOW = frozenset({"k", "size", "stride", "padding", "dilation", "dims"})
_SPEC_WINDOW = frozenset({"k", "stride", "padding", "dilation", "name"})

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("standard", "a full convolution: every output channel sees every input channel", "conv", "Conv", "conv",
         _SPEC_WINDOW | {"filters", "groups", "bias", "scale"}, _WINDOW | {"cout", "bias"}, _conv,
         _standard_formula, separable=True, module=_conv_module),
    Kind("grouped", "a convolution in g groups (ResNeXt, AlexNet)", "gconv", "Conv grouped", "conv",
         _SPEC_WINDOW | {"filters", "groups", "bias", "scale"}, _WINDOW | {"cout", "groups", "bias"}, _conv,
         _grouped_formula, separable=True, module=_conv_module),
    Kind("depthwise", "one filter per input channel (groups = cin), x depth multiplier", "dw", "Conv DW", "depthwise",
         _SPEC_WINDOW | {"depth_multiplier", "bias"}, _WINDOW | {"depth_multiplier", "bias", "groups", "cout"},
         _depthwise, _depthwise_formula, module=_conv_module),
    Kind("pointwise", "a 1x1 convolution: mixes channels only", "pw", "Conv 1x1", "pointwise",
         frozenset({"filters", "expand", "bias", "scale", "name"}), _WINDOW | {"cout", "bias"}, _pointwise,
         _pointwise_formula, module=_conv_module),
    Kind("separable", "depthwise then pointwise (Keras SeparableConv2D)", "sep", "Conv DW + 1x1", "separable",
         _SPEC_WINDOW | {"filters", "depth_multiplier", "bias", "scale"},
         _WINDOW | {"cout", "bias", "depth_multiplier"}, _separable),
    Kind("transposed", "a transposed convolution (Conv2DTranspose): each input scattered over the kernel",
         "tconv", "Conv transposed", "transposed",
         _SPEC_WINDOW | {"filters", "output_padding", "groups", "bias", "scale"},
         _WINDOW | {"cout", "groups", "output_padding", "bias"}, _transposed, _transposed_formula,
         module=_transposed_module),
    Kind("linear", "a dense layer: cin -> cout features", "fc", "Fully connected", "dense",
         frozenset({"units", "bias", "scale", "name"}), frozenset({"cout", "bias", "size"}), _linear, _linear_formula,
         module=_linear_module, note="a linear layer maps cin to cout features, per position of a --size map"),
)}

#: kinds of the rows that carry weights and MACs (every kind but the composite `separable`)
WEIGHTED = tuple(name for name, k in KINDS.items() if k.module is not None)

#: spec-file layer type -> kind (`conv` builds a standard or grouped conv, classified by its weights; `linear`
#: is accepted as another name for `dense`)
SPEC_KEYS = {**{k.spec_key: k.name for k in reversed(KINDS.values())}, "linear": "linear"}


def has_separable(kind: str, kernel: tuple[int, ...] | list[int]) -> bool:
    """The one rule for "can become depthwise + pointwise": a standard or grouped conv with a kernel > 1.

    A grouped conv is eligible (Xception's view: depthwise is grouping taken to one channel per group); its pair
    has g·(1/N + 1/D_K²) of its MACs, which is more than the original once g is large (ResNeXt) - dscalc shows it.
    Depthwise, pointwise, transposed and linear layers have no counterpart."""
    entry = KINDS.get(kind)
    return entry is not None and entry.separable and any(k > 1 for k in kernel)


def separable_of(layer: LayerCost, depth_multiplier: int = 1) -> SeparableComparison | None:
    """The depthwise + pointwise pair that replaces a standard or grouped conv with k > 1, else None.

    The depthwise part keeps the original's kernel, stride, padding and dilation (so its output size
    is the original's); the pointwise part maps cin * depth_multiplier channels to cout. A bias, if the
    original has one, goes on the pointwise part only (Keras SeparableConv2D).
    """
    if not has_separable(layer.kind, layer.kernel):
        return None
    batch, cin, *spatial = layer.input_shape
    cout = layer.output_shape[1]
    named = layer.name != layer.kind
    dw = L.depthwise(
        cin, layer.kernel, tuple(spatial), depth_multiplier=depth_multiplier, batch=batch,
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation, bias=False, dtype=layer.dtype,
        name=f"{layer.name}.depthwise" if named else "depthwise",
    )
    pw = L.pointwise(
        cin * depth_multiplier, cout, tuple(layer.output_shape[2:]), batch=batch, bias=layer.bias > 0,
        dtype=layer.dtype, name=f"{layer.name}.pointwise" if named else "pointwise",
    )
    closed = F.separable_ratio(cout, layer.kernel, depth_multiplier, layer.groups)
    return SeparableComparison(original=layer, depthwise=dw, pointwise=pw, closed_form=closed)


def label(layer: LayerCost) -> str:
    """`standard 3x3/s2` - the kind and its geometry."""
    geo = layer.geometry()
    return f"{layer.kind} {geo}" if geo else layer.kind


def formula(layer: LayerCost) -> tuple[str, str]:
    """The closed form of one layer's MACs, symbolic and with its numbers."""
    entry = KINDS.get(layer.kind)
    if entry is None or entry.formula is None:
        raise ValueError(f"no closed form for {layer.kind}")
    return entry.formula(layer)

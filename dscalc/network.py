"""Declared networks: a YAML spec -> validated layer tree -> exact per-layer costs. No torch.

A spec is a mapping::

    name: my_net
    description: one line
    input: [3, 224, 224]          # channels, then spatial size (1D, 2D or 3D)
    resolution: true              # --resolution R replaces every spatial size by R (rho)
    width: floor                  # how --alpha scales channels: floor | divisible8 | none
    defaults: {bias: false, padding: same}
    layers:
      - conv: {filters: 32, k: 3, stride: 2, name: conv1}
      - bn
      - relu6
      - repeat: {times: 5, layers: [...]}
      - block: {name: b1, layers: [...]}
      - add: [[...main path...], []]          # residual: an empty branch is the identity
      - concat: [[...], [...]]

Layer types: conv, depthwise, pointwise, separable, transposed, dense (linear), bn, relu, relu6,
activation, softmax, maxpool, avgpool, gap (global average pool), flatten, dropout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dscalc import layers as L
from dscalc.errors import BadInput
from dscalc.records import LayerCost

BUILTIN_DIR = Path(__file__).parent / "networks"

CONV_TYPES = {"conv", "depthwise", "pointwise", "separable", "transposed"}
ZERO_COST = {"relu", "relu6", "activation", "softmax", "sigmoid", "swish", "hardswish", "dropout", "flatten"}
POOL_TYPES = {"maxpool", "avgpool", "gap"}
LAYER_TYPES = CONV_TYPES | ZERO_COST | POOL_TYPES | {"dense", "linear", "bn"}
STRUCTURE_TYPES = {"repeat", "block", "add", "concat"}

OPTIONS: dict[str, set[str]] = {
    "conv": {"filters", "k", "stride", "padding", "dilation", "groups", "bias", "scale", "name"},
    "depthwise": {"k", "stride", "padding", "dilation", "depth_multiplier", "bias", "name"},
    "pointwise": {"filters", "expand", "bias", "scale", "name"},
    "separable": {"filters", "k", "stride", "padding", "dilation", "depth_multiplier", "bias", "scale", "name"},
    "transposed": {"filters", "k", "stride", "padding", "output_padding", "groups", "bias", "scale", "name"},
    "dense": {"units", "bias", "scale", "name"},
    "bn": {"name"},
    "maxpool": {"k", "stride", "padding", "name"},
    "avgpool": {"k", "stride", "padding", "name"},
}
WIDTH_RULES = ("floor", "divisible8", "none")
AUTO_NAMES = {"depthwise": "dw", "pointwise": "pw", "separable": "sep", "transposed": "tconv", "dense": "fc"}


@dataclass
class Spec:
    """A validated network spec."""

    name: str
    description: str
    input: tuple[int, ...]
    layers: list[Any]
    resolution: bool = True
    width: str = "floor"
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: round to the nearest multiple of divisor, never more than 10% down."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def scale_channels(filters: int, alpha: float, rule: str, scale: bool | str = True) -> int:
    """Channels after the width multiplier: Keras floor(alpha * c), torchvision divisible-by-8, or none."""
    if scale is False or rule == "none":
        return filters
    if scale == "at_least_one":  # torchvision's last_channel: 1280 * max(1.0, alpha)
        alpha = max(1.0, alpha)
    if rule == "divisible8":
        return make_divisible(filters * alpha)
    return max(1, int(filters * alpha))


# ----------------------------------------------------------------------------------------------- loading


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load(name_or_path: str) -> Spec:
    """A built-in network by name, or a spec file by path."""
    import yaml

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise BadInput(f"no such spec file: {name_or_path}", "network")
        where = str(path)
    else:
        path = BUILTIN_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise BadInput(f"unknown built-in network {name_or_path!r}; known: {', '.join(builtin_names())}",
                           "network")
        where = f"built-in {name_or_path}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}{at}: malformed YAML: {problem}", "network") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{where}: cannot read: {e}", "network") from None
    return parse(raw, where)


def parse(raw: Any, where: str = "spec") -> Spec:
    """Validate a spec mapping (as loaded from YAML)."""
    if not isinstance(raw, dict):
        raise BadInput(f"{where}: a spec is a mapping with 'input' and 'layers'", "network")
    unknown = set(raw) - {"name", "description", "input", "layers", "resolution", "width", "defaults"}
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", "network")
    inp = raw.get("input")
    if (not isinstance(inp, list) or not 2 <= len(inp) <= 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in inp)):
        raise BadInput(f"{where}: 'input' must be [channels, size...] of positive integers, got {inp!r}", "network")
    if not isinstance(raw.get("layers"), list) or not raw["layers"]:
        raise BadInput(f"{where}: 'layers' must be a non-empty list", "network")
    width = raw.get("width", "floor")
    if width not in WIDTH_RULES:
        raise BadInput(f"{where}: 'width' must be one of {', '.join(WIDTH_RULES)}, got {width!r}", "network")
    spec = Spec(
        name=str(raw.get("name", Path(where).stem)), description=str(raw.get("description", "")),
        input=tuple(inp), layers=raw["layers"], resolution=bool(raw.get("resolution", True)), width=width,
        defaults=dict(raw.get("defaults") or {}), source=where,
    )
    for _ in _walk(spec.layers, where):
        pass
    return spec


def _normalise(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    """`- bn` or `- conv: {...}` -> (type, options), validated."""
    opts: Any
    if isinstance(item, str):
        kind, opts = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        kind, opts = next(iter(item.items()))
        if opts is None:
            opts = {}
    else:
        raise BadInput(f"{where}: a layer is a name or a one-key mapping like 'conv: {{...}}', got {item!r}",
                       "network")
    if kind in ("add", "concat"):
        if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(b, list) for b in opts):
            raise BadInput(f"{where}: '{kind}' takes a list of at least two branches (lists of layers)", "network")
        return kind, {"branches": opts}
    if kind not in LAYER_TYPES | STRUCTURE_TYPES:
        raise BadInput(f"{where}: unknown layer type {kind!r}", "network")
    if not isinstance(opts, dict):
        raise BadInput(f"{where}: options of '{kind}' must be a mapping, got {opts!r}", "network")
    if kind in ("repeat", "block"):
        if not isinstance(opts.get("layers"), list):
            raise BadInput(f"{where}: '{kind}' needs 'layers: [...]'", "network")
        if kind == "repeat" and not (isinstance(opts.get("times"), int) and opts["times"] > 0):
            raise BadInput(f"{where}: 'repeat' needs 'times' > 0", "network")
        return kind, opts
    allowed = OPTIONS.get("dense" if kind == "linear" else kind, {"name"})
    unknown = set(opts) - allowed
    if unknown:
        raise BadInput(f"{where}: {kind} has no option(s) {', '.join(sorted(unknown))}", "network")
    return ("dense" if kind == "linear" else kind), opts


def _walk(items: list[Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, item in enumerate(items):
        kind, opts = _normalise(item, f"{where}, layer {i + 1}")
        yield kind, opts
        if kind in ("repeat", "block"):
            yield from _walk(opts["layers"], f"{where}, layer {i + 1}")
        elif kind in ("add", "concat"):
            for b in opts["branches"]:
                yield from _walk(b, f"{where}, layer {i + 1}")


# ------------------------------------------------------------------------------------------- transforms


def _rewrite(items: list[Any], fn: Callable[[list[Any]], list[Any]]) -> list[Any]:
    """Apply `fn` to every layer list of the tree, innermost first."""
    out: list[Any] = []
    for item in items:
        kind, opts = _normalise(item, "")
        if kind in ("repeat", "block"):
            out.append({kind: {**opts, "layers": _rewrite(opts["layers"], fn)}})
        elif kind in ("add", "concat"):
            out.append({kind: [_rewrite(b, fn) for b in opts["branches"]]})
        else:
            out.append({kind: opts})
    return fn(out)


def _as_standard(items: list[Any]) -> list[Any]:
    """Each depthwise (+ its bn/activation) + pointwise pair, and each separable, becomes one standard conv."""
    out: list[Any] = []
    i = 0
    while i < len(items):
        kind, opts = next(iter(items[i].items()))
        if kind == "separable":
            out.append({"conv": {k: v for k, v in opts.items() if k != "depth_multiplier"}})
            i += 1
            continue
        if kind == "depthwise":
            j = i + 1
            while j < len(items) and next(iter(items[j])) in ZERO_COST | {"bn"}:
                j += 1
            if j < len(items) and next(iter(items[j])) == "pointwise":
                pw = items[j]["pointwise"]
                conv = {k: opts[k] for k in ("k", "stride", "padding", "dilation") if k in opts}
                conv.update({k: pw[k] for k in ("filters", "expand", "bias", "scale", "name") if k in pw})
                out.append({"conv": conv})
                i = j + 1
                continue
        out.append(items[i])
        i += 1
    return out


def _as_separable(items: list[Any]) -> list[Any]:
    """Each standard conv with k > 1 becomes depthwise (same k/stride/padding/dilation) + pointwise."""
    out: list[Any] = []
    for item in items:
        kind, opts = next(iter(item.items()))
        k = opts.get("k", 1)
        if kind == "conv" and opts.get("groups", 1) == 1 and (k != 1 if isinstance(k, int) else any(v != 1 for v in k)):
            dw = {key: opts[key] for key in ("k", "stride", "padding", "dilation") if key in opts}
            pw = {key: opts[key] for key in ("filters", "bias", "scale") if key in opts}
            name = opts.get("name")
            if name:
                dw["name"], pw["name"] = f"{name}.dw", f"{name}.pw"
            out += [{"depthwise": {**dw, "bias": False}}, {"pointwise": pw}]
        else:
            out.append(item)
    return out


# ---------------------------------------------------------------------------------------------- costing


@dataclass
class _Ctx:
    alpha: float
    width: str
    defaults: dict[str, Any]
    batch: int
    dtype: str
    rows: list[LayerCost] = field(default_factory=list)


def build(spec: Spec, *, alpha: float = 1.0, resolution: int | None = None, as_: str | None = None,
          batch: int = 1, dtype: str = "float32") -> list[LayerCost]:
    """Per-layer exact costs of a spec at width multiplier `alpha` and input `resolution`."""
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise BadInput(f"must be a positive number, got {alpha}", "alpha")
    if resolution is not None and resolution <= 0:
        raise BadInput(f"must be positive, got {resolution}", "resolution")
    L.positive(batch, "batch")
    items = spec.layers
    if as_ == "standard":
        items = _rewrite(items, _as_standard)
    elif as_ == "separable":
        items = _rewrite(items, _as_separable)
    elif as_ is not None:
        raise BadInput(f"must be separable or standard, got {as_!r}", "as")
    channels, *spatial = spec.input
    if resolution is not None:
        if not spec.resolution:
            raise BadInput(f"{spec.source} does not take a resolution multiplier", "resolution")
        spatial = [resolution] * len(spatial)
    ctx = _Ctx(alpha, spec.width, spec.defaults, batch, dtype)
    shape = (batch, channels, *spatial)
    _cost_list(items, shape, "", ctx, spec.source)
    return ctx.rows


def _cost_list(items: list[Any], shape: tuple[int, ...], prefix: str, ctx: _Ctx, where: str) -> tuple[int, ...]:
    counters: dict[str, int] = {}
    for i, item in enumerate(items):
        kind, opts = _normalise(item, where)
        here = f"{where}, layer {i + 1} ({prefix or 'top'})"
        counters[kind] = counters.get(kind, 0) + 1
        auto = f"{AUTO_NAMES.get(kind, kind)}{counters[kind]}"
        if kind == "block":
            shape = _cost_list(opts["layers"], shape, f"{prefix}{opts.get('name', auto)}.", ctx, here)
        elif kind == "repeat":
            for r in range(opts["times"]):
                shape = _cost_list(opts["layers"], shape, f"{prefix}{opts.get('name', auto)}.{r + 1}.", ctx, here)
        elif kind in ("add", "concat"):
            outs = [
                _cost_list(branch, shape, f"{prefix}{'' if counters[kind] == 1 else auto + '.'}b{b + 1}.", ctx, here)
                for b, branch in enumerate(opts["branches"])
            ]
            if kind == "add":
                if any(o != outs[0] for o in outs):
                    shapes = " vs ".join("x".join(map(str, o[1:])) for o in outs)
                    raise BadInput(f"{here}: residual add of mismatched shapes {shapes} (channels must match)",
                                   "network")
                out = outs[0]
            else:
                if any(o[2:] != outs[0][2:] for o in outs):
                    raise BadInput(f"{here}: concat of branches with different spatial sizes", "network")
                out = (shape[0], sum(o[1] for o in outs), *outs[0][2:])
            ctx.rows.append(LayerCost(name=f"{prefix}{kind}", kind=kind, input_shape=shape, output_shape=out,
                                      dtype=ctx.dtype))
            shape = out
        else:
            try:
                rows = _layer(kind, opts, shape, f"{prefix}{opts.get('name') or auto}", ctx)
            except BadInput as e:
                option = f"{e.option} " if e.option and e.option != "network" else ""
                raise BadInput(f"{here}: {kind}: {option}{e.rule}", "network") from None
            ctx.rows += rows
            shape = rows[-1].output_shape
    return shape


def _opt(opts: dict[str, Any], ctx: _Ctx, key: str, default: Any) -> Any:
    return opts.get(key, ctx.defaults.get(key, default))


def _layer(kind: str, opts: dict[str, Any], shape: tuple[int, ...], name: str, ctx: _Ctx) -> list[LayerCost]:
    batch, cin, *spatial = shape
    size = tuple(spatial)
    common: dict[str, Any] = dict(batch=batch, dtype=ctx.dtype, dims=len(size) or None)

    def filters(key: str = "filters") -> int:
        if key not in opts:
            raise BadInput(f"needs '{key}'")
        return scale_channels(opts[key], ctx.alpha, ctx.width, opts.get("scale", True))

    def conv_args() -> dict[str, Any]:
        return dict(stride=_per_dim(opts.get("stride", 1)), padding=_pad(_opt(opts, ctx, "padding", "same")),
                    dilation=_per_dim(opts.get("dilation", 1)), bias=_opt(opts, ctx, "bias", False))

    if kind in CONV_TYPES and not size:
        raise BadInput(f"needs a spatial input, got a flat {cin}-vector")
    if kind == "conv":
        return [L.conv(cin, filters(), _per_dim(opts.get("k", 1)), size, groups=opts.get("groups", 1),
                       name=name, **conv_args(), **common)]
    if kind == "transposed":
        return [L.conv(cin, filters(), _per_dim(opts.get("k", 1)), size, groups=opts.get("groups", 1),
                       transposed=True, output_padding=_per_dim(opts.get("output_padding", 0)), name=name,
                       **conv_args(), **common)]
    if kind == "depthwise":
        return [L.depthwise(cin, _per_dim(opts.get("k", 3)), size,
                            depth_multiplier=opts.get("depth_multiplier", 1), name=name, **conv_args(), **common)]
    if kind == "pointwise":
        cout = round(cin * opts["expand"]) if "expand" in opts else filters()
        return [L.pointwise(cin, cout, size, bias=_opt(opts, ctx, "bias", False), name=name, **common)]
    if kind == "separable":  # Keras SeparableConv2D: depthwise, then pointwise with the one bias
        args = conv_args()
        bias = args.pop("bias")
        dm = opts.get("depth_multiplier", 1)
        dw = L.depthwise(cin, _per_dim(opts.get("k", 3)), size, depth_multiplier=dm, bias=False,
                         name=f"{name}.dw", **args, **common)
        pw = L.pointwise(cin * dm, filters(), dw.output_shape[2:], bias=bias, name=f"{name}.pw", **common)
        return [dw, pw]
    if kind == "dense":
        features = cin if not size else None
        if features is None:
            raise BadInput(f"needs a flat input (add 'flatten' or 'gap' first), got {cin}x"
                           + "x".join(map(str, size)))
        return [L.linear(features, filters("units"), batch=batch, bias=_opt(opts, ctx, "bias", True), name=name,
                         dtype=ctx.dtype)]
    if kind == "bn":
        return [LayerCost(name=name, kind="bn", input_shape=shape, output_shape=shape, norm=2 * cin,
                          buffers=2 * cin, dtype=ctx.dtype)]
    if kind in ("maxpool", "avgpool"):
        stride = opts.get("stride")
        return [L.pool(cin, _per_dim(opts.get("k", 2)), size, kind=kind,
                       stride=_per_dim(stride) if stride is not None else None,
                       padding=_pad(opts.get("padding", "valid")), batch=batch, dtype=ctx.dtype, name=name)]
    if kind == "gap":
        # Keras GlobalAveragePooling: (B, C) out, ready for a dense layer (torchvision: avgpool + flatten)
        return [LayerCost(name=name, kind="gap", input_shape=shape, output_shape=(batch, cin), dtype=ctx.dtype)]
    if kind == "flatten":
        return [LayerCost(name=name, kind="flatten", input_shape=shape, output_shape=(batch, math.prod(shape[1:])),
                          dtype=ctx.dtype)]
    # activations, dropout: shape-preserving, no parameters; a gap output is squeezed by the next dense
    out = shape
    return [LayerCost(name=name, kind=kind, input_shape=shape, output_shape=out, dtype=ctx.dtype)]


def _per_dim(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _pad(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value

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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dscalc.cost import heads
from dscalc.cost import layers as L
from dscalc.cost.kinds import KINDS, SPEC_KEYS, LayerArgs, separable_of
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput

BUILTIN_DIR = Path(__file__).parent / "networks"

#: the weighted layer types (from the kind registry) and their options
WEIGHTED_TYPES = {key: KINDS[kind] for key, kind in SPEC_KEYS.items()}
ZERO_COST = {"relu", "relu6", "activation", "softmax", "sigmoid", "swish", "hardswish", "dropout", "flatten"}
POOL_TYPES = {"maxpool", "avgpool", "gap"}
LAYER_TYPES = set(WEIGHTED_TYPES) | ZERO_COST | POOL_TYPES | {"bn"}
STRUCTURE_TYPES = {"repeat", "block", "add", "concat"}

OPTIONS: dict[str, frozenset[str]] = {
    **{key: kind.spec_options for key, kind in WEIGHTED_TYPES.items()},
    "bn": frozenset({"name"}),
    "maxpool": frozenset({"k", "stride", "padding", "name"}),
    "avgpool": frozenset({"k", "stride", "padding", "name"}),
}
WIDTH_RULES = ("floor", "divisible8", "none")
#: default layer names: the kind's short name and a counter (fc1, dw2); other types use their own name
AUTO_NAMES = {key: KINDS[kind].short for key, kind in SPEC_KEYS.items() if key != "conv"}

#: the largest width multiplier accepted (channels x alpha stays an exact, finite number)
MAX_ALPHA = 1e6
#: a spec file larger than this is refused before it is parsed
MAX_SPEC_BYTES = 1_000_000
#: a spec that expands (repeats, YAML aliases) to more layers than this is refused before it is costed
MAX_LAYERS = 100_000


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
        size = path.stat().st_size
    except OSError as e:
        raise BadInput(f"{where}: cannot read: {e.strerror}", "network") from None
    if size > MAX_SPEC_BYTES:
        raise BadInput(f"{where}: {size:,} bytes is larger than a spec may be ({MAX_SPEC_BYTES:,} bytes)", "network")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}{at}: malformed YAML: {problem}", "network") from None
    except UnicodeDecodeError:
        raise BadInput(f"{where}: not a text file (UTF-8)", "network") from None
    except OSError as e:
        raise BadInput(f"{where}: cannot read: {e.strerror}", "network") from None
    except RecursionError:
        raise BadInput(f"{where}: nested too deeply", "network") from None
    return parse(raw, where)


def parse(raw: Any, where: str = "spec") -> Spec:
    """Validate a spec mapping (as loaded from YAML)."""
    if not isinstance(raw, dict):
        raise BadInput(f"{where}: a spec is a mapping with 'input' and 'layers'", "network")
    unknown = set(raw) - {"name", "description", "input", "layers", "resolution", "width", "defaults"}
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {_few(unknown)}; a spec has name, input, layers (and description, "
                       "resolution, width, defaults)", "network")
    inp = raw.get("input")
    if (not isinstance(inp, list) or not 2 <= len(inp) <= 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in inp)):
        raise BadInput(f"{where}: 'input' must be [channels, size...] of positive integers, got {_brief(inp)}",
                       "network")
    if not isinstance(raw.get("layers"), list) or not raw["layers"]:
        raise BadInput(f"{where}: 'layers' must be a non-empty list", "network")
    width = raw.get("width", "floor")
    if width not in WIDTH_RULES:
        raise BadInput(f"{where}: 'width' must be one of {', '.join(WIDTH_RULES)}, got {_brief(width)}", "network")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise BadInput(f"{where}: 'defaults' must be a mapping like {{bias: false}}, got {defaults!r:.40}", "network")
    spec = Spec(
        name=str(raw.get("name", Path(where).stem)), description=str(raw.get("description", "")),
        input=tuple(inp), layers=raw["layers"], resolution=bool(raw.get("resolution", True)), width=width,
        defaults=dict(defaults), source=where,
    )
    for count, _ in enumerate(_walk(spec.layers, where), 1):
        if count > MAX_LAYERS:
            raise BadInput(f"{where}: more than {MAX_LAYERS:,} layers (repeats and YAML aliases included)",
                           "network")
    expanded = _expanded(spec.layers, MAX_LAYERS)
    if expanded > MAX_LAYERS:
        raise BadInput(f"{where}: expands to more than {MAX_LAYERS:,} layers (repeats and YAML aliases included)",
                       "network")
    return spec


def _brief(value: Any, limit: int = 40) -> str:
    """A value from a spec file, as a short repr for an error line (a whole file is never echoed)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _few(keys: set[Any], shown: int = 3) -> str:
    """At most a few short keys of a mapping from a file, and only those that look like names (letters, digits,
    _ . -, up to 20): `dscalc network /etc/shadow` echoes none of its lines, nor a piece of a password hash."""
    names = sorted(str(k) for k in keys if re.fullmatch(r"[\w.-]{1,20}", str(k), re.ASCII))[:shown]
    more = len(keys) - len(names)
    if not names:
        return f"({more} of them, not shown: not plain names)"
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


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
        raise BadInput(f"{where}: a layer is a name or a one-key mapping like 'conv: {{...}}', got {_brief(item)}",
                       "network")
    if kind in ("add", "concat"):
        if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(b, list) for b in opts):
            raise BadInput(f"{where}: '{kind}' takes a list of at least two branches (lists of layers)", "network")
        return kind, {"branches": opts}
    if kind not in LAYER_TYPES | STRUCTURE_TYPES:
        raise BadInput(f"{where}: unknown layer type {_brief(kind)}", "network")
    if not isinstance(opts, dict):
        raise BadInput(f"{where}: options of '{kind}' must be a mapping, got {_brief(opts)}", "network")
    if kind in ("repeat", "block"):
        if not isinstance(opts.get("layers"), list):
            raise BadInput(f"{where}: '{kind}' needs 'layers: [...]'", "network")
        if kind == "repeat" and not (isinstance(opts.get("times"), int) and opts["times"] > 0):
            raise BadInput(f"{where}: 'repeat' needs 'times' > 0", "network")
        return kind, opts
    allowed = OPTIONS.get("dense" if kind == "linear" else kind, {"name"})
    unknown = set(opts) - allowed
    if unknown:
        raise BadInput(f"{where}: {kind} has no option(s) {_few(unknown)}", "network")
    return ("dense" if kind == "linear" else kind), opts


def _expanded(items: list[Any], budget: int) -> int:
    """How many layers a list expands to with its repeats, counted until `budget` is passed (never further)."""
    total = 0
    for item in items:
        kind, opts = _normalise(item, "")
        if kind == "repeat":
            inner = _expanded(opts["layers"], budget)
            total += 1 + inner * opts["times"]
        elif kind == "block":
            total += 1 + _expanded(opts["layers"], budget)
        elif kind in ("add", "concat"):
            total += 1 + sum(_expanded(b, budget) for b in opts["branches"])
        else:
            total += 1
        if total > budget:
            return total
    return total


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
        kind, opts = next(iter(items[i].items()))  # (add/concat carry their branches, already rewritten)
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


# ---------------------------------------------------------------------------------------------- costing


@dataclass
class _Ctx:
    alpha: float
    width: str
    defaults: dict[str, Any]
    batch: int
    dtype: str
    as_separable: bool = False
    rows: list[LayerCost] = field(default_factory=list)
    #: per row, the rows whose outputs are its inputs (-1 = the network's input): the data flow that decides which
    #: gradients autograd computes and which tensors it keeps (`cost.training`)
    sources: list[tuple[int, ...]] = field(default_factory=list)
    head: int = -1  # the row whose output is the tensor flowing on

    def append(self, row: LayerCost, sources: tuple[int, ...] | None = None) -> None:
        self.rows.append(row)
        self.sources.append((self.head,) if sources is None else sources)
        self.head = len(self.rows) - 1


def build(spec: Spec, *, alpha: float = 1.0, resolution: int | None = None, as_: str | None = None,
          batch: int = 1, dtype: str = "float32") -> list[LayerCost]:
    """Per-layer exact costs of a spec at width multiplier `alpha` and input `resolution`."""
    return _costed(spec, alpha, resolution, as_, batch, dtype).rows


def dataflow(spec: Spec, *, alpha: float = 1.0, resolution: int | None = None, as_: str | None = None,
             batch: int = 1, dtype: str = "float32") -> tuple[list[LayerCost], list[tuple[int, ...]]]:
    """The rows of `build` and, for each, the indices of the rows that feed it (-1 = the network's input)."""
    ctx = _costed(spec, alpha, resolution, as_, batch, dtype)
    return ctx.rows, ctx.sources


def _costed(spec: Spec, alpha: float, resolution: int | None, as_: str | None, batch: int, dtype: str) -> _Ctx:
    if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise BadInput(f"must be a positive number, got {alpha}", "alpha")
    if alpha > MAX_ALPHA:
        raise BadInput(f"must be at most {MAX_ALPHA:g} (a width multiplier), got {alpha:g}", "alpha")
    if resolution is not None and resolution <= 0:
        raise BadInput(f"must be positive, got {resolution}", "resolution")
    L.positive(batch, "batch")
    if resolution is not None:
        L.positive(resolution, "resolution")
    items = spec.layers
    if as_ == "standard":
        items = _rewrite(items, _as_standard)
    elif as_ in heads.HEADS:
        rewrite, found = heads.rewriter(as_, spec.defaults)
        items = _rewrite(items, rewrite)
        if not found[0]:
            raise heads.no_head(spec.source)
    elif as_ not in (None, "separable"):
        raise BadInput(f"must be separable, standard, {' or '.join(heads.HEADS)}, got {as_!r}", "as")
    channels, *spatial = spec.input
    if resolution is not None:
        if not spec.resolution:
            raise BadInput(f"{spec.source} does not take a resolution multiplier", "resolution")
        spatial = [resolution] * len(spatial)
    # --as separable: every layer with a separable counterpart (kinds.has_separable, the rule `layer`, `profile`
    # and `compare` use) becomes that counterpart's depthwise + pointwise pair, nothing in between
    ctx = _Ctx(alpha, spec.width, spec.defaults, batch, dtype, as_separable=as_ == "separable")
    shape = (batch, channels, *spatial)
    _cost_list(items, shape, "", ctx, spec.source)
    return ctx


def _cost_list(items: list[Any], shape: tuple[int, ...], prefix: str, ctx: _Ctx, where: str) -> tuple[int, ...]:
    counters: dict[str, int] = {}
    for i, item in enumerate(items):
        kind, opts = _normalise(item, where)
        here = f"{where}, layer {i + 1} ({prefix or 'top'})"
        counters[kind] = counters.get(kind, 0) + 1
        base = AUTO_NAMES.get(kind, kind)
        auto = f"{base}{'_' if base[-1].isdigit() else ''}{counters[kind]}"  # relu6_1, not relu61
        if kind == "block":
            shape = _cost_list(opts["layers"], shape, f"{prefix}{opts.get('name', auto)}.", ctx, here)
        elif kind == "repeat":
            for r in range(opts["times"]):
                shape = _cost_list(opts["layers"], shape, f"{prefix}{opts.get('name', auto)}.{r + 1}.", ctx, here)
        elif kind in ("add", "concat"):
            # the first branching layer of a list names its branches b1, b2...; later ones add2.b1, concat1.b1...
            first = counters.get("add", 0) + counters.get("concat", 0) == 1
            start, outs, heads = ctx.head, [], []
            for b, branch in enumerate(opts["branches"]):
                ctx.head = start  # every branch starts from the same tensor
                outs.append(_cost_list(branch, shape, f"{prefix}{'' if first else auto + '.'}b{b + 1}.", ctx, here))
                heads.append(ctx.head)
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
            ctx.append(LayerCost(name=f"{prefix}{kind if counters[kind] == 1 else auto}", kind=kind,
                                 input_shape=shape, output_shape=out, dtype=ctx.dtype), tuple(heads))
            shape = out
        else:
            try:
                rows = _layer(kind, opts, shape, f"{prefix}{opts.get('name') or auto}", ctx)
            except BadInput as e:
                option = f"{e.option} " if e.option and e.option != "network" else ""
                raise BadInput(f"{here}: {kind}: {option}{e.rule}", "network") from None
            if ctx.as_separable:
                rows = [part for r in rows for part in _separable_pair(r)]
            for row in rows:
                ctx.append(row)
            shape = rows[-1].output_shape
    return shape


def _separable_pair(layer: LayerCost) -> list[LayerCost]:
    """`--as separable`: a layer with a counterpart becomes its depthwise + pointwise pair (name.dw, name.pw)."""
    pair = separable_of(layer)
    if pair is None:
        return [layer]
    return [replace(pair.depthwise, name=f"{layer.name}.dw"), replace(pair.pointwise, name=f"{layer.name}.pw")]


def _opt(opts: dict[str, Any], ctx: _Ctx, key: str, default: Any) -> Any:
    return opts.get(key, ctx.defaults.get(key, default))


def _layer(kind: str, opts: dict[str, Any], shape: tuple[int, ...], name: str, ctx: _Ctx) -> list[LayerCost]:
    batch, cin, *spatial = shape
    size = tuple(spatial)

    def filters(key: str = "filters") -> int:
        if key not in opts:
            raise BadInput(f"needs '{key}'")
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInput(f"'{key}' must be a positive integer, got {value!r:.40}")
        scaled = scale_channels(value, ctx.alpha, ctx.width, opts.get("scale", True))
        if scaled > L.MAX_VALUE:
            raise BadInput(f"'{key}' {value} x alpha {ctx.alpha:g} = {scaled:.3g} channels is more than "
                           f"{L.MAX_VALUE:,}")
        return scaled

    if kind in WEIGHTED_TYPES:
        entry = WEIGHTED_TYPES[kind]
        if entry.name == "linear":
            if size:
                raise BadInput(f"needs a flat input (add 'flatten' or 'gap' first), got {cin}x"
                               + "x".join(map(str, size)))
            args = LayerArgs(cin, filters("units"), bias=_opt(opts, ctx, "bias", True), batch=batch, dtype=ctx.dtype,
                             name=name)
            return entry.build(args)
        if not size:
            raise BadInput(f"needs a spatial input, got a flat {cin}-vector")
        if entry.name == "pointwise":  # a 1x1 conv: no window, so no padding (whatever the defaults say)
            cout: int | None = _expand(cin, opts["expand"]) if "expand" in opts else filters()
            padding: Any = 0
        else:
            cout = filters() if entry.name != "depthwise" else None
            padding = _pad(_opt(opts, ctx, "padding", "same"))
        args = LayerArgs(
            cin, cout, k=_per_dim(opts.get("k", 3 if entry.name in ("depthwise", "separable") else 1)), size=size,
            stride=_per_dim(opts.get("stride", 1)), padding=padding,
            dilation=_per_dim(opts.get("dilation", 1)), groups=opts.get("groups", 1),
            depth_multiplier=opts.get("depth_multiplier", 1), output_padding=_per_dim(opts.get("output_padding", 0)),
            bias=_opt(opts, ctx, "bias", False), dims=len(size), batch=batch, dtype=ctx.dtype, name=name)
        return entry.build(args)
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
    # activations, dropout: shape-preserving, no parameters
    return [LayerCost(name=name, kind=kind, input_shape=shape, output_shape=shape, dtype=ctx.dtype)]


def _expand(cin: int, factor: Any) -> int:
    """`pointwise: {expand: 6}`: cin x factor output channels (MobileNetV2's expansion)."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < L.MAX_VALUE:
        raise BadInput(f"'expand' must be a positive number, got {factor!r}")
    return round(cin * factor)


def _per_dim(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _pad(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value

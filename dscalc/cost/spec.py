"""A layer as the user describes it on the command line (`dscalc layer`, `compare`): its kind and options,
checked against the kind's rules - which options it takes, what it requires - with the defaults that were
assumed. `LayerSpec.build()` costs it and its depthwise-separable counterpart."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from dscalc.cost import parse
from dscalc.cost.kinds import KINDS, LayerArgs, separable_of
from dscalc.cost.layers import DEFAULT_SIZE, infer_dims
from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.errors import BadInput

#: the command-line options that describe a layer (what `given` may name)
LAYER_OPTIONS = ("cin", "cout", "k", "size", "height", "width", "stride", "padding", "dilation", "groups",
                 "depth_multiplier", "output_padding", "bias", "dims", "batch", "kind", "dtype")
#: options every kind takes
_ALWAYS = frozenset({"cin", "batch", "dtype", "kind"})


@dataclass(frozen=True)
class LayerSpec:
    """A checked layer description: `kind`, the parsed arguments, and what was assumed."""

    kind: str
    args: LayerArgs
    padding_text: str  # as the user wrote it (for the caption)
    assumed_size: bool = False

    @classmethod
    def from_options(
        cls, *, cin: int, cout: int | None = None, k: str | None = None, size: str | None = None,
        height: int | None = None, width: int | None = None, stride: str = "1", padding: str = "same",
        dilation: str = "1", groups: int = 1, depth_multiplier: int = 1, output_padding: str = "0",
        bias: bool = False, dims: int | None = None, batch: int = 1, kind: str | None = None,
        dtype: str = "float32", given: Collection[str] = (),
    ) -> LayerSpec:
        """Check the options of one layer. `given` names the options the user typed (to reject those that do
        not apply to the kind); defaults are never rejected."""
        chosen = kind or ("grouped" if groups > 1 else "standard")
        if chosen not in KINDS:
            raise BadInput(f"expected one of {', '.join(KINDS)}, got {chosen!r}", "kind")
        entry = KINDS[chosen]
        k_val = parse.per_dim(k, "k") if k is not None else None
        size_val = parse.per_dim(size, "size") if size is not None else None
        if height is not None or width is not None:
            if size is not None:
                raise BadInput("give either --size or --height/--width, not both", "size")
            if height is None or width is None:
                raise BadInput("--height and --width go together", "height" if height is None else "width")
            size_val = (height, width)
        # the kind's own rules first: they say what to use instead
        if chosen in ("standard", "separable", "pointwise") and groups != 1:
            raise BadInput(f"a {chosen} conv has groups 1; use --kind grouped", "groups")
        if chosen == "grouped" and groups == 1:
            raise BadInput("--kind grouped needs --groups > 1", "groups")
        if chosen == "depthwise":
            if cout is not None and cout != cin * depth_multiplier:
                raise BadInput(f"a depthwise conv has cin x depth-multiplier = {cin * depth_multiplier} outputs, "
                               f"got {cout}", "cout")
            if groups not in (1, cin):
                raise BadInput(f"a depthwise conv has groups = cin = {cin}", "groups")
        if chosen == "pointwise":
            if k_val is not None and set(k_val if isinstance(k_val, tuple) else (k_val,)) != {1}:
                raise BadInput(f"a pointwise conv has a 1x1 kernel, got {k}", "k")
            k_val = 1
        if "output_padding" in given and chosen != "transposed":
            raise BadInput("only applies to a transposed convolution", "output_padding")
        allowed = entry.options | _ALWAYS | ({"depth_multiplier"} if entry.separable else set())
        for option in given:
            if ("size" if option in ("height", "width") else option) not in allowed:
                raise BadInput(f"does not apply to --kind {chosen}" + (f" ({entry.note})" if entry.note else ""),
                               option)
        if chosen == "linear":
            if cout is None:
                raise BadInput("is required", "cout")
            spatial = () if size_val is None else size_val if isinstance(size_val, tuple) else (size_val,) * 2
            return cls(chosen, LayerArgs(cin, cout, size=spatial, bias=bias, batch=batch, dtype=dtype), padding)
        if k_val is None:
            raise BadInput(f"is required for --kind {chosen}", "k")
        if cout is None and chosen != "depthwise":
            raise BadInput("is required", "cout")
        assumed = size_val is None
        if size_val is None:
            size_val = DEFAULT_SIZE
        n_dims = dims if dims is not None else infer_dims(size_val, k_val)
        per_dim = {"stride": parse.per_dim(stride, "stride"), "dilation": parse.per_dim(dilation, "dilation"),
                   "output_padding": parse.per_dim(output_padding, "output_padding")}
        pad = parse.padding(padding)
        if dims is None:  # per-dimension values must agree with the dimensionality --size and --k give
            for option, value in [*per_dim.items(), ("padding", pad)]:
                if isinstance(value, tuple) and len(value) != n_dims:
                    raise BadInput(f"has {len(value)} values but the layer is {n_dims}D (from --size and --k); "
                                   f"give --dims {len(value)} or a {len(value)}D --size", option)
        args = LayerArgs(cin, cout, k_val, size_val, per_dim["stride"], pad, per_dim["dilation"], groups,
                         depth_multiplier, per_dim["output_padding"], bias, n_dims, batch, dtype)
        return cls(chosen, args, padding, assumed)

    def build(self) -> tuple[LayerCost, SeparableComparison | None, list[str]]:
        """The layer, its depthwise-separable counterpart (None where it has none) and the assumptions made."""
        a = self.args
        # --kind separable: the standard conv, shown beside the pair that replaces it
        layer = KINDS["standard" if self.kind == "separable" else self.kind].build(a)[0]
        comparison = separable_of(layer, a.depth_multiplier) if self.kind != "depthwise" else None
        bias = "bias" if a.bias else "no bias"
        if self.kind == "linear":
            assumptions = [f"batch {a.batch}, {a.dtype}, {bias}"]
            if a.size:  # per position of a channels-last map: a 1x1 conv, unlike the same map flattened first
                positions, shown = math.prod(a.size), "x".join(map(str, a.size))
                assumptions.append(f"applied per position of a {shown} map (channels last): {a.batch * positions:,} "
                                   f"rows of {a.cin:,} features - a 1x1 conv's params and MACs (--kind pointwise "
                                   f"--size {shown}); flattened first it is --cin {a.cin * positions:,}: the same "
                                   f"MACs, {positions:,}x the weights")
        else:
            assumptions = [f"default --size {DEFAULT_SIZE}"] if self.assumed_size else []
            assumptions.append(f"padding {self.padding_text}, batch {a.batch}, {a.dtype}, {bias}"
                               + (", bias on the pointwise part" if a.bias and comparison else ""))
            assumptions.append("MAC = multiply-accumulate, FLOPs = 2 x MACs, FLOP/B = FLOPs per byte moved")
        return layer, comparison, assumptions

"""`compare MODEL.keras --as pointwise-head | gap-head`: a Keras model's Flatten -> Dense head rewritten, and both
counted by the Keras profiler (`trace.keras`). No weight is read or allocated: the model comes from its
configuration with shape-only weights (`keras.shapes_only`), and the rewrite builds its new layers in the same
scope.

One symbolic pass finds the heads (as `trace.convert.find_heads` does for a torch model): a Flatten of a spatial
(H, W, C) map with H x W > 1, then Dense layers each fed the previous one's width, with only shape-keeping layers
(activations, dropout, normalisation) between. A second pass rebuilds the model as a functional one on new inputs,
calling the original layers except those of a head:

- ``pointwise-head``: the Flatten is dropped, every Dense becomes a Conv2D of its units with a 1x1 kernel (same
  name, bias and activation) on the map, and a GlobalAveragePooling2D follows the last one;
- ``gap-head``: the Flatten becomes a GlobalAveragePooling2D, and the first Dense is built anew (same
  configuration) on the C pooled features.

A Dense applied to a (..., H, W, C) tensor already works per position - a 1x1 convolution: it is named, and left
alone. Only the top level of the model is rewritten (a head inside a nested model is not seen)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from dscalc.cost import heads
from dscalc.errors import BadInput, DscalcError, first_line
from dscalc.trace.keras import _profile, _quiet, _symbolic_inputs, import_keras, shapes_only
from dscalc.trace.records import ProfileResult

#: layers that may sit between the Dense layers of a head (shape-keeping; rebuilt as they are on the map)
_BETWEEN = frozenset({"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Dropout", "GaussianDropout",
                      "GaussianNoise", "AlphaDropout", "BatchNormalization", "LayerNormalization", "Identity"})


@dataclass(frozen=True)
class KerasHeads:
    """The Flatten -> Dense stacks found: (flatten layer, dense layers, the (C, H, W) map, its data format, the
    shape-keeping layers between the dense ones)."""

    stacks: tuple[tuple[Any, tuple[Any, ...], tuple[int, int, int], str, tuple[Any, ...]], ...]
    per_pixel: tuple[str, ...]
    pooled: tuple[str, ...]

    def lines(self, as_: str) -> tuple[tuple[str, ...], int]:
        found = [(tuple(d.name for d in dense), spatial) for _, dense, spatial, _, _ in self.stacks]
        return heads.model_lines(as_, found, self.per_pixel)


def _walk(keras: Any, model: Any, inputs: list[Any], call: Any) -> Any:
    """Run the top level of `model` on `inputs`, each layer call going through `call(layer, args, kwargs)`."""
    if isinstance(model, keras.Sequential):
        x = inputs[0] if len(inputs) == 1 else inputs
        for layer in model.layers:
            x = call(layer, (x,), {})
        return x
    if hasattr(model, "_run_through_graph") and getattr(model, "_nodes_by_depth", None):
        standard = model._standardize_inputs(inputs if len(inputs) > 1 else inputs[0])
        return model._run_through_graph(standard, operation_fn=lambda op: lambda *a, **k: call(op, a, k))
    raise BadInput(f"{model.name} is a subclassed keras.Model (its layers form no graph dscalc can walk): build "
                   "it with the functional API or keras.Sequential", "model")


def _shape(keras: Any, tree: Any) -> tuple[int, ...]:
    first = next((t for t in keras.tree.flatten(tree) if isinstance(t, keras.KerasTensor)), None)
    return tuple(int(d) for d in first.shape) if first is not None else ()


def find(keras: Any, model: Any, shapes: list[tuple[int, ...]]) -> KerasHeads:
    """The model's Flatten -> Dense stacks, its Dense layers applied per position, and those after a 1x1 map."""
    calls: list[tuple[Any, tuple[int, ...], tuple[int, ...]]] = []

    def record(layer: Any, args: tuple, kwargs: dict) -> Any:
        with _quiet():
            out = layer.compute_output_spec(*args, **kwargs)
        calls.append((layer, _shape(keras, (args, kwargs)), _shape(keras, out)))
        return out

    _walk(keras, model, _symbolic_inputs(keras, model, shapes), record)
    dense_cls, flatten_cls = keras.layers.Dense, keras.layers.Flatten
    stacks, per_pixel, pooled = [], [], []
    i = 0
    while i < len(calls):
        layer, x, y = calls[i]
        i += 1
        if isinstance(layer, dense_cls) and len(x) > 2:
            per_pixel.append(layer.name)
            continue
        if not isinstance(layer, flatten_cls) or len(x) != 4 or len(y) != 2:
            continue
        fmt = getattr(layer, "data_format", None) or keras.config.image_data_format()
        c, h, w = (x[1], x[2], x[3]) if fmt == "channels_first" else (x[3], x[1], x[2])
        dense: list[Any] = []
        between: list[Any] = []
        width = y[1]
        j = i
        while j < len(calls):
            nxt, xi, yi = calls[j]
            if isinstance(nxt, dense_cls) and len(xi) == 2 and xi[1] == width:
                dense.append(nxt)
                width = nxt.units
            elif type(nxt).__name__ in _BETWEEN and xi == yi and dense:
                between.append(nxt)
            else:
                break
            j += 1
        if not dense:
            continue
        if h * w == 1:
            pooled += [d.name for d in dense[:1]]
        else:
            last = max(k for k, (lyr, _, _) in enumerate(calls) if lyr is dense[-1])
            kept = tuple(b for b in between if any(lyr is b for lyr, _, _ in calls[i:last]))
            stacks.append((layer, tuple(dense), (c, h, w), fmt, kept))
        i = j
    return KerasHeads(tuple(stacks), tuple(per_pixel), tuple(pooled))


def rewrite(keras: Any, model: Any, shapes: list[tuple[int, ...]], as_: str, found: KerasHeads) -> Any:
    """A functional copy of `model` with every stack of `found` rewritten (new layers only for those)."""
    layers = keras.layers
    replace: dict[int, Any] = {}
    for flatten, dense, _, fmt, between in found.stacks:
        if as_ == "gap-head":
            gap = layers.GlobalAveragePooling2D(data_format=fmt, name=flatten.name)
            replace[id(flatten)] = lambda args, kwargs, gap=gap: gap(args[0])
            first = type(dense[0]).from_config(dense[0].get_config())
            replace[id(dense[0])] = lambda args, kwargs, first=first: first(*args, **kwargs)
            continue
        replace[id(flatten)] = lambda args, kwargs: args[0]  # the map itself: no Flatten
        for b in between:  # built anew on the map (a BatchNormalization built for (N, units) refuses it)
            config = b.get_config()
            if fmt == "channels_first" and config.get("axis") in (-1, [-1]):
                config["axis"] = 1
            fresh = type(b).from_config(config)
            replace[id(b)] = lambda args, kwargs, fresh=fresh: fresh(*args, **kwargs)
        for k, d in enumerate(dense):
            conv = layers.Conv2D(d.units, 1, data_format=fmt, activation=d.activation, use_bias=d.use_bias,
                                 name=d.name)
            pool = layers.GlobalAveragePooling2D(data_format=fmt, name=f"{d.name}_gap") \
                if k == len(dense) - 1 else None

            def call(args: tuple, kwargs: dict, conv: Any = conv, pool: Any = pool) -> Any:
                y = conv(args[0])
                return pool(y) if pool is not None else y

            replace[id(d)] = call

    def build(layer: Any, args: tuple, kwargs: dict) -> Any:
        new = replace.get(id(layer))
        return new(args, kwargs) if new is not None else layer(*args, **kwargs)

    dtypes = [t.dtype for t in model.inputs] if getattr(model, "inputs", None) else ["float32"] * len(shapes)
    inputs = [keras.Input(batch_shape=s, dtype=d) for s, d in zip(shapes, dtypes)]
    outputs = _walk(keras, model, inputs, build)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=f"{model.name}_{as_}")


def compare(source: Any, shapes: list[tuple[int, ...]],
            as_: str) -> tuple[ProfileResult, ProfileResult, tuple[str, ...], int]:
    """The original's and the rewritten model's profiles, the lines naming what changed, and how many Dense layers
    were replaced. Bad input (one line) when the model has no Flatten -> Dense head."""
    model = source.load()
    keras = import_keras()
    with shapes_only(keras) if source.format == "keras" else contextlib.nullcontext():
        original = _profile(keras, model, shapes, None)
        found = find(keras, model, shapes)
        if not found.stacks:
            raise heads.no_model_head("Dense", found.pooled, found.per_pixel)
        try:
            with _quiet():
                variant = rewrite(keras, model, shapes, as_, found)
        except DscalcError:
            raise
        except Exception as e:  # a layer that does not take the map (a BatchNormalization of another axis)
            raise BadInput(f"the head of {source.target} cannot be rewritten as {as_}: {type(e).__name__}: "
                           f"{first_line(e)}", "as") from None
        rewritten = _profile(keras, variant, shapes, None)
    lines, replaced = found.lines(as_)
    return original, rewritten, lines, replaced


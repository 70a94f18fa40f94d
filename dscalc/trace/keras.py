"""Keras 3 models (`.keras`, `.h5`, or a .py that builds a `keras.Model`), costed from their layers: the functional
graph is run once on symbolic tensors of the --input shapes (Keras' own layout: channels last unless a layer says
otherwise), each layer's configuration and shapes go through the exact engine (`dscalc.cost.layers`), and
`trace.summary` turns the records into rows, totals and the separable what-if - nothing is computed, so a Keras
model profiles as fast as its torch twin once Keras is imported. A `.keras` / `.h5` file is rebuilt from its
configuration alone (read with a size bound by `trace.keras_file`), in safe mode, with weights that have shapes and
no values (`shapes_only`): what a file declares costs no memory, whatever its size.

One row per Keras layer, with Keras' layer name and class; a nested model's layers are `outer.inner`. Totals come
under both conventions: dscalc's `params` (the weights a layer creates trainable: kernels, biases, BN gamma/beta;
torch's sum(p.numel())) and `buffers` (created non-trainable: BN moving mean/variance), and Keras' own
`trainable_params` / `non_trainable_params` / `total_params` (model.summary(), count_params(); a frozen layer's
weights are non-trainable there).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dscalc.cost import layers as L
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput, DscalcError, RuntimeFailure, first_line, from_user_code
from dscalc.trace.keras_file import read_config
from dscalc.trace.onnx import einsum_macs
from dscalc.trace.records import OpRecord, ProfileResult, Trace
from dscalc.trace.summary import summarize
from dscalc.trace.userfile import factory, import_file

ModelSource = Any  # trace.source.ModelSource


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keras' and the user's prints and warnings, kept off the report."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


_BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "jax", "openvino": "openvino"}


def _usable_backend() -> bool:
    """Whether Keras would start on a backend that is installed: KERAS_BACKEND, else keras.json's (which Keras
    writes on its first import, naming TensorFlow, whether or not it is there)."""
    if os.environ.get("KERAS_BACKEND"):
        return True
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        backend = json.loads(Path(home, "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        backend = "tensorflow"
    module = _BACKEND_MODULES.get(str(backend))
    return module is not None and importlib.util.find_spec(module) is not None


def import_keras() -> Any:
    """Keras, on the backend the user configured when it is installed, else on torch (dscalc computes nothing
    with it: any backend will do)."""
    if "keras" not in sys.modules and not _usable_backend():
        if importlib.util.find_spec("torch") is None:
            raise RuntimeFailure("Keras needs a backend and none is installed: pip install 'dscalc[torch]' (or set "
                                 "KERAS_BACKEND to an installed one)")
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        with _quiet():
            import keras
    except Exception as e:
        raise RuntimeFailure(f"keras does not import: {first_line(e)}") from None
    return keras


# ---------------------------------------------------------------------------------------------- loading

@contextlib.contextmanager
def shapes_only(keras: Any) -> Iterator[None]:
    """Layers built in here get weights with a shape and no value: Keras' StatelessScope leaves a variable
    uninitialised (initialize_variables=False: not even when the scope closes), and on the torch backend what
    Keras still computes while building (a Normalization's broadcast mean, an initializer that shape inference
    calls) is computed on the meta device, which allocates nothing. The uninitialised variables are then dropped
    from Keras' global list of them, so no later scope of the process initialises them either."""
    from keras.src.backend.common import global_state

    key = "uninitialized_variables"
    before = list(global_state.get_global_attribute(key) or [])
    device = keras.device("meta") if keras.backend.backend() == "torch" else contextlib.nullcontext()
    try:
        with keras.StatelessScope(initialize_variables=False), device:
            yield
    finally:
        global_state.set_global_attribute(key, before)


def load(source: ModelSource, device: str = "cpu") -> Any:
    """The keras.Model of a .keras / .h5 file or built by a .py file. A file is rebuilt from its configuration
    alone (read with a size bound, `keras_file`), in Keras' safe mode (no lambdas, no pickles), with weights that
    have shapes and no values (`shapes_only`): its weights are never read and never allocated."""
    if source.format == "keras_python":
        return _python_model(import_keras(), source)
    text, h5 = read_config(source.path)  # before Keras is imported: a refused file costs no import
    keras = import_keras()
    try:
        with _quiet(), shapes_only(keras):
            model = _from_config(text, h5)
    except RecursionError:
        raise BadInput(f"{source.path}: the model configuration is nested too deeply", "model") from None
    except Exception as e:
        raise BadInput(f"{source.path} does not load as a Keras model: {first_line(e)}", "model") from None
    if not isinstance(model, keras.Model):
        raise BadInput(f"{source.path} does not load as a Keras model: its configuration makes a "
                       f"{type(model).__name__}, not a keras.Model", "model")
    return model


def _from_config(text: str, h5: bool) -> Any:
    """The model of a configuration, as keras.saving.load_model(compile=False, safe_mode=True) builds it before it
    reads the weights: the .keras path (saving_lib) or the legacy .h5 path (legacy_h5_format)."""
    if not h5:
        from keras.src.saving import saving_lib

        return saving_lib._model_from_config(text, None, False, True)  # custom_objects, compile, safe_mode
    from keras.src.legacy.saving import json_utils, saving_options, saving_utils
    from keras.src.saving import serialization_lib

    config = json_utils.decode(text)
    with saving_options.keras_option_scope(use_legacy_config=True), serialization_lib.SafeModeScope(True):
        return saving_utils.model_from_config(config, custom_objects={})


def _python_model(keras: Any, source: ModelSource) -> Any:
    """A class or function of a .py file that builds the keras.Model (the name may be left out when the file
    defines exactly one)."""
    path: Path = source.path
    module = import_file(path, "_dscalc_keras", _quiet)
    build = factory(module, path, source.name, keras.Model)
    what = f"{path}:{source.name or build.__name__}"
    try:
        with _quiet():
            model = build(**source.kwargs)
    except TypeError as e:
        raise BadInput(f"cannot build {what}: {first_line(e)}", "kwargs") from None
    except (Exception, SystemExit) as e:
        raise from_user_code(e, f"building {what}") from None
    if not isinstance(model, keras.Model):
        raise BadInput(f"{what} returned {type(model).__name__}, not a keras.Model", "model")
    return model


# ---------------------------------------------------------------------------------------------- costing

def _numel(variables: Any) -> int:
    return sum(math.prod(int(d) for d in v.shape) for v in variables)


def _spatial(layer: Any, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """(batch, channels, spatial) of a conv layer's input in its data_format."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return shape[0], shape[1], tuple(shape[2:])
    return shape[0], shape[-1], tuple(shape[1:-1])


def _padding(layer: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> Any:
    padding = layer.padding
    if padding == "causal":  # Conv1D: everything before the sequence
        return tuple((d * (k - 1), 0) for k, d in zip(kernel, dilation))
    return padding  # 'same' (TensorFlow's rule, the engine's 'same') or 'valid'


def _conv_records(keras: Any, layer: Any, shape: tuple[int, ...], name: str) -> list[LayerCost]:
    """The engine's records of a Keras convolution layer (two for SeparableConv: depthwise, then pointwise)."""
    batch, cin, spatial = _spatial(layer, shape)
    kernel, stride, dilation = tuple(layer.kernel_size), tuple(layer.strides), tuple(layer.dilation_rate)
    padding = _padding(layer, kernel, dilation)
    geo: dict[str, Any] = dict(batch=batch, stride=stride, dilation=dilation)
    klayers = keras.layers
    if isinstance(layer, (klayers.Conv1DTranspose, klayers.Conv2DTranspose, klayers.Conv3DTranspose)):
        extra = layer.output_padding
        if padding == "valid":  # Keras: out = in * s + max(k_dilated - s, 0), i.e. padding 0 and this output padding
            extra = extra if extra is not None else tuple(max(s - d * (k - 1) - 1, 0)
                                                          for k, s, d in zip(kernel, stride, dilation))
        elif extra is not None:  # 'same' with an explicit output padding: Keras pads k_dilated // 2 on each side
            padding = tuple((d * (k - 1) // 2,) * 2 for k, d in zip(kernel, dilation))
        return [L.conv(cin, layer.filters, kernel, spatial, padding=padding, transposed=True,
                       output_padding=extra or 0, bias=layer.use_bias, name=name, **geo)]
    if isinstance(layer, (klayers.DepthwiseConv1D, klayers.DepthwiseConv2D)):
        return [L.depthwise(cin, kernel, spatial, depth_multiplier=layer.depth_multiplier, padding=padding,
                            bias=layer.use_bias, name=name, **geo)]
    if isinstance(layer, (klayers.SeparableConv1D, klayers.SeparableConv2D)):
        dw = L.depthwise(cin, kernel, spatial, depth_multiplier=layer.depth_multiplier, padding=padding, bias=False,
                         name=f"{name}.depthwise", **geo)
        pw = L.conv(cin * layer.depth_multiplier, layer.filters, 1, dw.output_shape[2:], batch=batch,
                    dims=len(spatial), bias=layer.use_bias, name=f"{name}.pointwise")
        return [dw, pw]
    return [L.conv(cin, layer.filters, kernel, spatial, padding=padding, groups=getattr(layer, "groups", 1),
                   bias=layer.use_bias, name=name, **geo)]


def _attention(layer: Any, args: tuple, kwargs: dict) -> list[tuple[str, int]]:
    """keras.layers.MultiHeadAttention on (batch, length, features) inputs: the four projections (linear) and the
    attention itself, Q K^T and the weighted sum of V (matmul)."""
    tensors = list(args) + [None] * 3
    query = kwargs.get("query", tensors[0])
    value = kwargs.get("value", tensors[1])
    key = kwargs.get("key", tensors[2]) or value
    q, k, v = (tuple(int(d) for d in t.shape) for t in (query, key, value))
    if not (len(q) == len(k) == len(v) == 3):
        raise ValueError("MultiHeadAttention on inputs of rank other than 3")
    h, kd = layer.num_heads, layer.key_dim
    vd = layer.value_dim or kd
    (b, t, dq), s, dk, dv = q, k[1], k[2], v[2]
    out = layer._output_shape if isinstance(getattr(layer, "_output_shape", None), int) else dq
    return [("linear", b * t * dq * h * kd), ("linear", b * s * dk * h * kd), ("linear", b * s * dv * h * vd),
            ("matmul", b * h * t * s * (kd + vd)), ("linear", b * t * h * vd * out)]


_NORMS = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
          "RMSNormalization", "SpectralNormalization")
_POOLS = ("MaxPooling", "AveragePooling", "GlobalAveragePooling", "GlobalMaxPooling", "AdaptiveAveragePooling",
          "AdaptiveMaxPooling")
_ELEMENTWISE = frozenset({"Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Add", "Subtract",
                          "Multiply", "Average", "Maximum", "Minimum", "Rescaling", "Normalization"})
#: layers that move, reshape, select or drop data: neither counted nor listed as uncounted
_SHAPE = frozenset({"InputLayer", "Flatten", "Reshape", "Permute", "Concatenate", "Dropout", "SpatialDropout1D",
                    "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
                    "RepeatVector", "Identity", "Embedding", "Masking", "ActivityRegularization", "Lambda"})


def _simple_kind(cls: str) -> str | None:
    if cls in _NORMS:
        return "batchnorm"
    if cls.startswith(_POOLS):
        return "pooling"
    if cls in _ELEMENTWISE:
        return "elementwise"
    return None


class _Walk:
    """One symbolic run of a model: a record per layer call (shared layers once per call), the layers seen."""

    def __init__(self, keras: Any) -> None:
        self.keras = keras
        self.records: list[OpRecord] = []
        self.uncounted: dict[str, int] = {}
        self.types: dict[str, str] = {}
        self.separable: dict[str, LayerCost] = {}  # rows of SeparableConv layers -> their depthwise part
        self.layers: dict[int, tuple[str, Any]] = {}  # id(layer) -> (row, layer), first call wins

    def run(self, model: Any, inputs: list[Any], prefix: str = "") -> Any:
        """Run `model` (Functional or Sequential, nested ones included) on symbolic `inputs`."""
        keras = self.keras
        if isinstance(model, keras.Sequential):
            x = inputs[0] if len(inputs) == 1 else inputs
            for layer in model.layers:
                x = self.call(layer, prefix, (x,), {})
            return x
        if hasattr(model, "_run_through_graph") and getattr(model, "_nodes_by_depth", None):
            standard = model._standardize_inputs(inputs if len(inputs) > 1 else inputs[0])
            return model._run_through_graph(standard, operation_fn=lambda op: self._visitor(op, prefix))
        raise BadInput(f"{model.name} is a subclassed keras.Model (its layers form no graph dscalc can walk): build "
                       "it with the functional API or keras.Sequential", "model")

    def _visitor(self, op: Any, prefix: str) -> Any:
        return lambda *args, **kwargs: self.call(op, prefix, args, kwargs)

    def call(self, layer: Any, prefix: str, args: tuple, kwargs: dict) -> Any:
        keras = self.keras
        row = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model) and (isinstance(layer, keras.Sequential) or
                                               getattr(layer, "_nodes_by_depth", None)):
            tensors = [t for t in self.keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
            return self.run(layer, tensors, f"{row}.")
        self.layers.setdefault(id(layer), (row, layer))
        self.types.setdefault(row, type(layer).__name__)
        with _quiet():
            out = layer.compute_output_spec(*args, **kwargs)
        self._cost(layer, row, args, kwargs, out)
        return out

    def _cost(self, layer: Any, row: str, args: tuple, kwargs: dict, out: Any) -> None:
        keras = self.keras
        cls = type(layer).__name__
        flat_out = keras.tree.flatten(out)
        elements = math.prod(int(d) for d in flat_out[0].shape) if flat_out else 0
        x = next((t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)), None)
        shape = tuple(int(d) for d in x.shape) if x is not None else ()
        klayers = keras.layers
        convs = (klayers.Conv1D, klayers.Conv2D, klayers.Conv3D, klayers.Conv1DTranspose, klayers.Conv2DTranspose,
                 klayers.Conv3DTranspose, klayers.DepthwiseConv1D, klayers.DepthwiseConv2D, klayers.SeparableConv1D,
                 klayers.SeparableConv2D)
        try:
            if isinstance(layer, convs):
                records = _conv_records(keras, layer, shape, row)
                if len(records) == 2:
                    self.separable[row] = records[0]
                for rec in records:
                    self.records.append(OpRecord(row, cls, "conv", rec.macs, math.prod(rec.output_shape), rec))
                return
            if isinstance(layer, klayers.Dense):
                batch = math.prod(shape[:-1])
                self.records.append(OpRecord(row, cls, "linear", batch * shape[-1] * layer.units, elements))
                return
            if isinstance(layer, klayers.EinsumDense):
                macs = einsum_macs(layer.equation, [shape, tuple(int(d) for d in layer.kernel.shape)])
                if macs is not None:
                    self.records.append(OpRecord(row, cls, "linear", macs, elements))
                    return
            if isinstance(layer, klayers.MultiHeadAttention):
                for kind, macs in _attention(layer, args, kwargs):
                    self.records.append(OpRecord(row, cls, kind, macs, elements))
                return
        except DscalcError as e:
            raise BadInput(f"layer {row!r} ({cls}): {e}", "model") from None
        except (ValueError, TypeError, AttributeError):
            pass  # a configuration dscalc does not cost: listed below
        simple = _simple_kind(cls)
        if simple is not None:
            self.records.append(OpRecord(row, cls, simple, 0, elements))
        elif cls not in _SHAPE:
            self.uncounted[cls] = self.uncounted.get(cls, 0) + 1


def declared_inputs(source: ModelSource) -> list[tuple[int, ...]]:
    """The model's declared input shapes, a dynamic batch as 1 (for a profile without --input)."""
    from dscalc.trace.source import fixed_dims

    model = source.load()
    if not getattr(model, "inputs", None):
        raise BadInput("is required: this Keras model declares no input shape (e.g. --input 1x224x224x3)", "input")
    return [fixed_dims(getattr(t, "name", str(i)), tuple(t.shape),
                       "x".join("?" if d is None else str(d) for d in t.shape)) for i, t in enumerate(model.inputs)]


def _symbolic_inputs(keras: Any, model: Any, shapes: list[tuple[int, ...]]) -> list[Any]:
    """KerasTensors of the --input shapes, checked against the model's inputs (None dims are free)."""
    declared = [tuple(t.shape) for t in model.inputs] if getattr(model, "inputs", None) else None
    if declared is not None:
        if len(declared) != len(shapes):
            raise BadInput(f"the model takes {len(declared)} input{'s' if len(declared) != 1 else ''}; got "
                           f"{len(shapes)} --input shape{'s' if len(shapes) != 1 else ''}", "input")
        for i, (want, got) in enumerate(zip(declared, shapes)):
            shown = "x".join("?" if d is None else str(d) for d in want)
            given = "x".join(map(str, got))
            if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
                raise BadInput(f"input {i} of the model is {shown} (Keras' layout, ? = any size), got {given}",
                               "input")
    dtypes = [t.dtype for t in model.inputs] if declared is not None else ["float32"] * len(shapes)
    return [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]


def profile(source: ModelSource, shapes: list[tuple[int, ...]], depth: int | None = None) -> ProfileResult:
    """Rows (one per Keras layer), totals under dscalc's and Keras' conventions, totals by op kind."""
    model = source.load()
    keras = import_keras()
    # a file's model has weights without values: building and walking it stays where nothing is allocated
    with shapes_only(keras) if source.format == "keras" else contextlib.nullcontext():
        return _profile(keras, model, shapes, depth)


def _profile(keras: Any, model: Any, shapes: list[tuple[int, ...]], depth: int | None) -> ProfileResult:
    if not model.built:
        try:
            with _quiet():
                model.build(shapes[0] if len(shapes) == 1 else shapes)
        except Exception as e:
            raise BadInput(f"the model does not build for these shapes: {first_line(e)}", "input") from None
    inputs = _symbolic_inputs(keras, model, shapes)
    walk = _Walk(keras)
    try:
        outputs = walk.run(model, inputs)
    except DscalcError:
        raise
    except Exception as e:
        raise BadInput(f"the model does not run on these shapes: {first_line(e)}", "input") from None

    # parameters: each variable once (a shared layer's weights too), in the row of the layer that owns it
    per_row: dict[str, int] = {}
    seen: set[int] = set()
    params = buffers = 0
    for row, layer in walk.layers.values():
        sublayers = list(layer._flatten_layers(include_self=True)) if hasattr(layer, "_flatten_layers") else [layer]
        for sub in sublayers:
            trainable: Any = getattr(sub, "_trainable_variables", None)
            frozen: Any = getattr(sub, "_non_trainable_variables", None)
            if trainable is None or frozen is None:  # no private lists: the public ones (a frozen layer's weights
                # then count as buffers); an operation of the graph that is no layer (keras.ops.add) has none
                trainable, frozen = getattr(sub, "trainable_weights", ()), getattr(sub, "non_trainable_weights", ())
            for variables, is_param in ((trainable, True), (frozen, False)):
                for v in variables:
                    if id(v) in seen:
                        continue
                    seen.add(id(v))
                    n = _numel([v])
                    if is_param:
                        params += n
                        per_row[row] = per_row.get(row, 0) + n
                    else:
                        buffers += n
    out_shapes = [tuple(int(d) for d in t.shape) for t in keras.tree.flatten(outputs)]
    trace = Trace(walk.records, walk.uncounted, walk.types, per_row, params, list(shapes), out_shapes)
    result = summarize(trace, depth)
    for r in result.rows:
        dw = walk.separable.get(r.name)
        if dw is not None:  # a SeparableConv layer: one row, the depthwise part's geometry
            pw = next(rec.layer for rec in walk.records if rec.module == r.name and rec.layer is not dw)
            r.kind, r.geometry = "separable", dw.geometry().replace(f"/g{dw.groups}", "")
            r.input_shape, r.output_shape = dw.input_shape, pw.output_shape if pw is not None else ()
    trainable = _numel(model.trainable_weights)
    total = _numel(model.weights)
    result.totals.update(buffers=buffers, trainable_params=trainable, non_trainable_params=total - trainable,
                         total_params=total)
    return result

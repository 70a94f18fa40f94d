"""ONNX models, profiled through the `onnx` package alone (never torch): shape inference with the --input shapes in
place of the dynamic dimensions, then one record per node - convolutions costed by the engine
(`dscalc.cost.layers.conv`, so the separable what-if is `cost.kinds.separable_of` as for any layer), Gemm, MatMul
(batched, broadcast), two-operand Einsum contractions and the attention ops as multiply-accumulates - and
`trace.summary` turns them into the rows, totals and by-kind totals a torch model gets.

Rows are named after the module that issued the node when the file says so (torch.onnx's dynamo exporter keeps
the module path in the node's metadata, the TorchScript exporter in the node's name, `/layer1/layer1.0/conv1/Conv`),
else after the node itself. Parameters are the initializers, each counted once, wherever it is used: floating-point
ones, and the integer weights of quantized ops; BatchNormalization's running mean and variance are `buffers` (as
in torch), and the integer constants of shape arithmetic are not parameters.

A file is untrusted (issue 23): `onnx_file.check` checks every tensor, external-data location and Einsum equation
before anything evaluates them and drops the weights' data (counting needs only their dims); shape inference and
folding run in a child process bounded in time (`onnx_infer`), folding nothing whose size it cannot bound first;
and a node that breaks its op's rules is bad input naming it - `MODEL: node 'name' (Op): ...`.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

import onnx

from dscalc.cost.formulas import same_padding
from dscalc.cost.layers import conv
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput, DscalcError, first_line
from dscalc.trace import onnx_file, onnx_infer
from dscalc.trace.onnx_file import node_label
from dscalc.trace.onnx_infer import FLOATS as _FLOATS
from dscalc.trace.onnx_infer import Shape
from dscalc.trace.onnx_infer import attrs as _attrs
from dscalc.trace.onnx_infer import dims as _dims
from dscalc.trace.onnx_infer import full as _full
from dscalc.trace.records import OpRecord, ProfileResult, Trace
from dscalc.trace.summary import summarize

ModelSource = Any  # trace.source.ModelSource (which imports this module only when an ONNX model is used)

#: quantized ops and the input slots that hold their (integer) weights
_QUANTIZED_WEIGHTS = {"QLinearConv": (3, 8), "ConvInteger": (1,), "QLinearMatMul": (3,), "MatMulInteger": (1,),
                      "DequantizeLinear": (0,)}

#: (data input, weight input, bias input) of each convolution op
_CONV_SLOTS = {"Conv": (0, 1, 2), "ConvInteger": (0, 1, -1), "QLinearConv": (0, 3, 8)}
_MATMUL_SLOTS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}

NORMS = frozenset({"BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
                   "SkipLayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
                   "LpNormalization", "MeanVarianceNormalization"})
POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
                   "ReduceMean", "MaxRoiPool", "MaxUnpool"})
ELEMENTWISE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Mish",
    "Sigmoid", "HardSigmoid", "HardSwish", "Swish", "Tanh", "Softplus", "Softsign", "ThresholdedRelu", "Clip",
    "Softmax", "LogSoftmax", "Hardmax", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Exp", "Log",
    "Erf", "Neg", "Abs", "Sign", "Floor", "Ceil", "Round", "Sin", "Cos", "Tan", "Max", "Min", "Sum", "Mean",
    "Where", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN",
    "IsInf", "Mod", "BitShift", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
})
#: ops that move, reshape, select or create data and compute nothing: neither counted nor listed as uncounted
SHAPE_OPS = frozenset({
    "Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND",
    "Shape", "Size", "Unsqueeze", "Squeeze", "Identity", "Constant", "ConstantOfShape", "Expand", "Pad", "Cast",
    "CastLike", "Dropout", "Range", "Tile", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements",
    "Trilu", "EyeLike", "OneHot", "NonZero", "Compress", "ReverseSequence", "SequenceConstruct", "Optional",
})


@dataclass
class OnnxModel:
    """A loaded ONNX file, checked (`onnx_file.check`): its ModelProto with every tensor's dims and type, the data
    of the small ones only (shape constants; the rest is never needed to count, and never read)."""

    proto: Any
    path: str


def load(source: ModelSource, device: str = "cpu") -> OnnxModel:
    """The checked ModelProto of `source.path`; a file that does not parse, or breaks a rule of `onnx_file.check`
    (tensor data, external-data locations, Einsum equations), is bad input (one line)."""
    path = source.path
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError, an unreadable file
        raise BadInput(f"{path} is not a valid ONNX model: {first_line(e)}", "model") from None
    if not proto.graph.node:
        raise BadInput(f"{path} is not an ONNX model (it holds no graph nodes)", "model")
    onnx_file.check(proto, str(path))
    return OnnxModel(proto, str(path))


# ---------------------------------------------------------------------------------------------- shapes

def declared_inputs(source: ModelSource) -> list[tuple[int, ...]]:
    """The graph inputs' declared shapes (initializers aside), a dynamic batch as 1 (for a profile without --input)."""
    from dscalc.trace.source import fixed_dims

    proto = source.load().proto
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializers]
    return [fixed_dims(v.name, _dims(v) or (None, None), _show(v)) for v in inputs]


def _show(value_info: Any) -> str:
    """A declared shape as the file names it: Nx3x224x224 (? for a dimension with no name)."""
    dims = value_info.type.tensor_type.shape.dim
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _static(model: Any, shapes: list[tuple[int, ...]]) -> Any:
    """A copy of the model whose graph inputs have the --input shapes (checked against the fixed dimensions),
    shape-inferred and its shape arithmetic folded (`onnx_infer.infer`: in a child process, bounded in time)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    initializers = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in initializers]
    if len(shapes) != len(inputs):
        names = ", ".join(i.name for i in inputs)
        raise BadInput(f"the model takes {len(inputs)} input{'s' if len(inputs) != 1 else ''} ({names}); "
                       f"got {len(shapes)} --input shape{'s' if len(shapes) != 1 else ''}", "input")
    for value, given in zip(inputs, shapes):
        declared = _dims(value)
        if declared is not None:
            if len(declared) != len(given):
                raise BadInput(f"input {value.name!r} has {len(declared)} dimensions ({_show(value)}), "
                               f"got {'x'.join(map(str, given))}", "input")
            for i, (d, g) in enumerate(zip(declared, given)):
                if d not in (None, 0) and d != g:
                    raise BadInput(f"input {value.name!r} is {_show(value)}: dimension {i} is fixed at {d}, "
                                   f"got {'x'.join(map(str, given))}", "input")
        shape = value.type.tensor_type.shape
        shape.ClearField("dim")
        for g in given:
            shape.dim.add().dim_value = g
    # the shapes stored in the file may hold the old symbolic dimensions: infer them all again from the inputs
    del m.graph.value_info[:]
    for out in m.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    return onnx_infer.infer(m)


# ------------------------------------------------------------------------------------------------ names

_METADATA_LIMIT = 100_000  # characters of a node's module-path metadata (a real one is a few hundred)


def _scopes(node: Any) -> tuple[str, str] | None:
    """(module path, module type) from torch.onnx's dynamo metadata, else None."""
    meta = {p.key: p.value for p in node.metadata_props}
    if "pkg.torch.onnx.name_scopes" not in meta:
        return None
    texts = meta["pkg.torch.onnx.name_scopes"], meta.get("pkg.torch.onnx.class_hierarchy", "[]")
    if max(map(len, texts)) > _METADATA_LIMIT:
        return None
    try:
        scopes, classes = (ast.literal_eval(text) for text in texts)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2:
        return None
    path = str(scopes[-2])
    kind = str(classes[-2]).rsplit(".", 1)[-1] if isinstance(classes, list) and len(classes) >= 2 else ""
    return path, kind


def _torchscript_path(name: str) -> str | None:
    """The module path in a TorchScript-exported node name: each scope is named relative to the module above the
    last one it does not extend - /layer1/layer1.0/conv1/Conv is layer1.0.conv1, and
    /features/features.1/conv/conv.0/conv.0.0/Conv is features.1.conv.0.0."""
    if not name.startswith("/"):
        return None
    base = path = previous = ""
    for part in name.split("/")[1:-1]:
        if not (previous and part.startswith(previous + ".")):
            base = path
        path = f"{base}.{part}" if base else part
        previous = part
    return path


def _module(node: Any, index: int) -> tuple[str, str]:
    """The row a node belongs to, and that row's type."""
    scoped = _scopes(node)
    if scoped is not None:
        return scoped[0], scoped[1] or node.op_type
    path = _torchscript_path(node.name)
    if path is not None:
        return path, node.op_type
    return node.name or f"{node.op_type}_{index}", node.op_type


# ------------------------------------------------------------------------------------------------ costs

class _Unknown(Exception):
    """A node whose operand shapes shape inference could not establish."""


class _NoContraction(_Unknown):
    """An Einsum that is not a matmul (elementwise, outer product, or more than two operands)."""


class _NotCosted(Exception):
    """An op with no MACs of a kind dscalc counts."""


class _Malformed(Exception):
    """A node that breaks its op's rules (operand ranks, attribute lengths): bad input naming the node."""


def _shown(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if shape else "a scalar"


def _check_conv(node: Any, x: tuple[int, ...], w: tuple[int, ...], a: dict[str, Any]) -> int:
    """The number of spatial dimensions of a convolution whose input, weight and attributes agree."""
    if len(x) < 3:
        raise _Malformed(f"the input is {len(x)}-D ({_shown(x)}); a convolution takes (N, C, spatial...)")
    d = len(x) - 2
    if len(w) != len(x):
        raise _Malformed(f"the weight is {len(w)}-D ({_shown(w)}) for a {len(x)}-D input")
    for key, count in (("kernel_shape", d), ("strides", d), ("dilations", d), ("pads", 2 * d),
                       ("output_padding", d)):
        if key in a and len(a[key]) != count:
            raise _Malformed(f"'{key}' has {len(a[key])} values; {d} spatial dimensions need {count}")
    if "output_shape" in a and len(a["output_shape"]) < d:
        raise _Malformed(f"'output_shape' has {len(a['output_shape'])} values; {d} spatial dimensions need {d}")
    return d


class Graph:
    """The shape-inferred graph: shapes by tensor name, initializers, and the cost of one node."""

    def __init__(self, model: Any) -> None:
        g = model.graph
        self.initializers = {i.name: i for i in g.initializer}
        self.shapes: dict[str, Shape] = {}
        for v in (*g.input, *g.value_info, *g.output):
            dims = _dims(v)
            if dims is not None:
                self.shapes[v.name] = dims
        for i in g.initializer:
            self.shapes[i.name] = tuple(int(d) for d in i.dims)
        self.alias: dict[str, str] = {}  # Identity outputs of initializers -> the initializer
        for node in g.node:
            if node.op_type == "Identity" and node.input and self.root(node.input[0]) in self.initializers:
                self.alias[node.output[0]] = self.root(node.input[0])

    def root(self, name: str) -> str:
        return self.alias.get(name, name)

    def shape(self, node: Any, slot: int) -> tuple[int, ...]:
        if slot >= len(node.input) or not node.input[slot]:
            raise _Unknown
        full = _full(self.shapes.get(node.input[slot]))
        if full is None:
            raise _Unknown
        return full

    def is_weight(self, node: Any, slot: int) -> bool:
        return slot < len(node.input) and self.root(node.input[slot]) in self.initializers

    def elements(self, node: Any) -> int:
        full = _full(self.shapes.get(node.output[0])) if node.output else None
        return math.prod(full) if full else 0


def _conv(g: Graph, node: Any, name: str) -> LayerCost:
    xs, ws, bs = _CONV_SLOTS[node.op_type]
    x, w = g.shape(node, xs), g.shape(node, ws)
    a = _attrs(node)
    d = _check_conv(node, x, w, a)
    n, c, *spatial = x
    kernel = tuple(a.get("kernel_shape", w[2:]))
    strides = tuple(a.get("strides", (1,) * d))
    dilations = tuple(a.get("dilations", (1,) * d))
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # SAME_UPPER is Keras/TF 'same' (the odd pixel after)
        same = [same_padding(size, k, s, dil) for size, k, s, dil in zip(spatial, kernel, strides, dilations)]
        padding: Any = tuple(p if auto_pad == "SAME_UPPER" else p[::-1] for p in same)
    else:
        padding = _explicit_pads(a, d, auto_pad)
    bias = 0 <= bs < len(node.input) and bool(node.input[bs])
    return conv(c, w[0], kernel, tuple(spatial), batch=n, stride=strides, padding=padding, dilation=dilations,
                groups=int(a.get("group", 1)), bias=bias, name=name)


def _explicit_pads(a: dict[str, Any], d: int, auto_pad: str) -> Any:
    """VALID, or the `pads` attribute [x1_begin, x2_begin, ..., x1_end, x2_end, ...] as (before, after) pairs."""
    if auto_pad == "VALID":
        return 0
    flat = tuple(a.get("pads", (0,) * 2 * d))
    return tuple((flat[i], flat[i + d]) for i in range(d))


def _conv_transpose(g: Graph, node: Any, name: str) -> LayerCost:
    x, w = g.shape(node, 0), g.shape(node, 1)
    a = _attrs(node)
    d = _check_conv(node, x, w, a)
    n, c, *spatial = x
    groups = int(a.get("group", 1))
    kernel = tuple(a.get("kernel_shape", w[2:]))
    strides = tuple(a.get("strides", (1,) * d))
    dilations = tuple(a.get("dilations", (1,) * d))
    extra = list(a.get("output_padding", (0,) * d))
    auto_pad = a.get("auto_pad", "NOTSET")
    wanted = a.get("output_shape")
    if wanted is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # the spec: total_padding = stride*(in-1) + output_padding + (k-1)*dilation + 1 - output_shape
        targets = list(wanted)[-d:] if wanted is not None else [size * s for size, s in zip(spatial, strides)]
        pads = []
        for i, (size, k, s, dil, out) in enumerate(zip(spatial, kernel, strides, dilations, targets)):
            total = s * (size - 1) + extra[i] + (k - 1) * dil + 1 - out
            if total < 0:  # a larger output than the kernel reaches: zeros appended at the end
                extra[i] -= total
                total = 0
            small = total // 2
            pads.append((total - small, small) if auto_pad == "SAME_LOWER" else (small, total - small))
        padding: Any = tuple(pads)
    else:
        padding = _explicit_pads(a, d, auto_pad)
    bias = len(node.input) > 2 and bool(node.input[2])
    return conv(c, w[1] * groups, kernel, tuple(spatial), batch=n, stride=strides, padding=padding,
                dilation=dilations, groups=groups, bias=bias, transposed=True, output_padding=tuple(extra), name=name)


def _matmul_macs(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """numpy.matmul semantics: a 1-D operand is a row (left) or column (right) vector; batch dims broadcast."""
    if not a or not b:
        raise _Malformed(f"a matrix product of {_shown(a)} and {_shown(b)} (a scalar operand)")
    if len(a) == 1:
        a = (1, *a)
    if len(b) == 1:
        b = (*b, 1)
    batch_a, batch_b = a[:-2], b[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = (1,) * (width - len(batch_a)) + batch_a
    batch_b = (1,) * (width - len(batch_b)) + batch_b
    batch = math.prod(max(p, q) for p, q in zip(batch_a, batch_b))
    return batch * a[-2] * a[-1] * b[-1]


def einsum_macs(equation: str, shapes: list[tuple[int, ...]]) -> int | None:
    """MACs of a two-operand contraction (a matmul in disguise): the product of the sizes of every index that
    is kept or multiplied across both operands (an index summed within one operand is reduced first, for free);
    None when nothing is contracted across the operands (an elementwise or outer product) or there are more than
    two operands."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != 2 or len(shapes) != 2:
        return None
    sizes: dict[str, int] = {}
    expanded = []
    ellipsis = max((len(s) - (len(t) - 3) for t, s in zip(terms, shapes) if "..." in t), default=0)
    spare = [chr(0x3B1 + i) for i in range(ellipsis)]  # the ellipsis dims, as letters no equation uses
    for term, shape in zip(terms, shapes):
        if "..." in term:
            before, after = term.split("...")
            n = len(shape) - len(before) - len(after)
            term = before + "".join(spare[ellipsis - n:]) + after
        if len(term) != len(shape):
            return None
        for letter, size in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), size)  # broadcast
        expanded.append(term)
    if arrow:
        out = rhs.replace("...", "".join(spare))
    else:  # implicit output: the ellipsis, then the letters that appear once, in order
        letters = "".join(expanded)
        out = "".join(spare) + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in spare))
    first, second = set(expanded[0]), set(expanded[1])
    if not (first & second) - set(out):
        return None
    return math.prod(sizes[c] for c in sizes if c in out or (c in first and c in second))


def _attention_macs(g: Graph, node: Any) -> int:
    """Q K^T and the weighted sum of V: heads * L * S * (E_qk + E_v) per batch, for ONNX Attention (opset 23)
    and com.microsoft.MultiHeadAttention (inputs already projected)."""
    a = _attrs(node)
    q, k, v = g.shape(node, 0), g.shape(node, 1), g.shape(node, 2)
    if min(len(q), len(k), len(v)) < 3:
        raise _Malformed(f"query, key and value are {_shown(q)}, {_shown(k)} and {_shown(v)}; attention takes "
                         "3-D (batch, length, hidden) or 4-D (batch, heads, length, head size) operands")
    if len(q) == 4:  # (batch, heads, length, head size)
        batch, heads, length, e_qk = q
        seq, e_v = k[-2], v[-1]
    elif len(q) == 3 and len(k) == 3 and len(v) == 3:  # (batch, length, hidden), heads from the attributes
        heads = int(a.get("q_num_heads", a.get("num_heads", 0)) or 0)
        kv_heads = int(a.get("kv_num_heads", heads) or heads)
        if not heads:
            raise _Unknown
        batch, length, hidden = q
        seq, e_qk, e_v = k[1], hidden // heads, v[2] // kv_heads
    else:
        raise _Unknown
    past = 0
    if node.op_type == "Attention" and len(node.input) > 4 and node.input[4]:
        past = g.shape(node, 4)[-2]  # past_key: (batch, kv heads, past length, head size)
    return batch * heads * length * (seq + past) * (e_qk + e_v)


def _fused_attention(g: Graph, node: Any) -> list[tuple[str, int]]:
    """com.microsoft.Attention: the QKV projection (linear) and the attention itself (matmul)."""
    a = _attrs(node)
    x, w = g.shape(node, 0), g.shape(node, 1)
    if len(x) != 3 or len(w) != 2:
        raise _Malformed(f"the input is {_shown(x)} and the weight {_shown(w)}; com.microsoft.Attention takes a "
                         "3-D input (batch, length, hidden) and a 2-D weight")
    batch, length, hidden_in = x
    sizes = list(a.get("qkv_hidden_sizes", [])) or [w[1] // 3] * 3
    return [("linear", batch * length * hidden_in * w[1]), ("matmul", batch * length * length * (sizes[0] + sizes[2]))]


def _cost(g: Graph, node: Any, name: str) -> list[tuple[str, int, LayerCost | None]]:
    """(kind, MACs, conv record) of what a node computes; [] for an op with no MACs of a known kind."""
    op = node.op_type
    if op in _CONV_SLOTS:
        layer = _conv(g, node, name)
        return [("conv", layer.macs, layer)]
    if op == "ConvTranspose":
        layer = _conv_transpose(g, node, name)
        return [("conv", layer.macs, layer)]
    if op == "Gemm":
        a, b = g.shape(node, 0), g.shape(node, 1)
        if len(a) != 2 or len(b) != 2:
            raise _Malformed(f"A is {_shown(a)} and B {_shown(b)}; Gemm takes two 2-D matrices")
        attrs = _attrs(node)
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else a
        n = b[0] if attrs.get("transB", 0) else b[1]
        return [("linear", m * k * n, None)]
    if op in _MATMUL_SLOTS:
        left, right = _MATMUL_SLOTS[op]
        macs = _matmul_macs(g.shape(node, left), g.shape(node, right))
        weighted = g.is_weight(node, right) or g.is_weight(node, left)
        return [("linear" if weighted else "matmul", macs, None)]
    if op == "Einsum":
        shapes = [g.shape(node, i) for i in range(len(node.input))]
        _check_einsum_ranks(str(_attrs(node).get("equation", "")), shapes)
        contraction = einsum_macs(str(_attrs(node).get("equation", "")), shapes)
        if contraction is None:
            raise _NoContraction
        weighted = any(g.is_weight(node, i) for i in range(len(node.input)))
        return [("linear" if weighted else "matmul", contraction, None)]
    if (op == "Attention" and node.domain in ("", "ai.onnx")) or op == "MultiHeadAttention":
        return [("matmul", _attention_macs(g, node), None)]
    if op == "Attention" and node.domain == "com.microsoft":
        return [(kind, macs, None) for kind, macs in _fused_attention(g, node)]
    raise _NotCosted(op)


def _check_einsum_ranks(equation: str, shapes: list[tuple[int, ...]]) -> None:
    """Each term of an Einsum names as many indices as its operand has dimensions (the '...' any number)."""
    terms = equation.replace(" ", "").partition("->")[0].split(",")
    for i, (term, shape) in enumerate(zip(terms, shapes)):
        letters = len(term.replace("...", ""))
        if letters > len(shape) or ("..." not in term and letters != len(shape)):
            raise _Malformed(f"the equation's term {term!r} has {letters} indices for input {i}, which is "
                             f"{len(shape)}-D ({_shown(shape)})")


def _kind(op: str) -> str | None:
    if op in NORMS:
        return "batchnorm"
    if op in POOLS:
        return "pooling"
    if op in ELEMENTWISE:
        return "elementwise"
    return None


# --------------------------------------------------------------------------------------------- profile

def _parameters(g: Graph, model: Any, modules: list[str], stored: set[str]) -> tuple[dict[str, int], int, int]:
    """Each initializer counted once, in the row of the first node that uses it: (params by row, params,
    buffers). BatchNormalization's mean and variance are buffers; integer constants are not parameters (except
    the weights of quantized ops)."""
    per_row: dict[str, int] = {}
    seen: set[str] = set()
    params = buffers = 0
    for node, row in zip(model.graph.node, modules):
        if node.op_type == "Identity":
            continue
        for slot, name in enumerate(node.input):
            root = g.root(name)
            init = g.initializers.get(root)
            if init is None or root in seen or root not in stored:  # (not the constants dscalc folded)
                continue
            quantized = slot in _QUANTIZED_WEIGHTS.get(node.op_type, ())
            if init.data_type not in _FLOATS and not quantized:
                continue
            seen.add(root)
            count = math.prod(init.dims)
            if node.op_type == "BatchNormalization" and slot in (3, 4):
                buffers += count
                continue
            params += count
            per_row[row] = per_row.get(row, 0) + count
    return per_row, params, buffers


def profile(source: ModelSource, shapes: list[tuple[int, ...]], depth: int | None = None) -> ProfileResult:
    """Rows, totals and totals by op kind of an ONNX model at the given input shapes."""
    loaded: OnnxModel = source.load()
    return profile_proto(loaded.proto, {i.name for i in loaded.proto.graph.initializer}, shapes, depth)


def profile_proto(proto: Any, stored: set[str], shapes: list[tuple[int, ...]], depth: int | None,
                  static: bool = False) -> ProfileResult:
    """`profile` of a checked ModelProto (`static`: already `_static` at these shapes); `stored`: the initializers
    that are weights (not constants the folding made)."""
    model = proto if static else _static(proto, shapes)
    g = Graph(model)
    records: list[OpRecord] = []
    uncounted: dict[str, int] = {}
    types: dict[str, str] = {}
    rows = []
    for index, node in enumerate(model.graph.node):
        row, kind = _module(node, index)
        rows.append(row)
        types.setdefault(row, kind)
        try:
            costs = _cost(g, node, row or node.name or node.op_type)
        except _NotCosted:
            simple = _kind(node.op_type)
            if simple is not None:
                records.append(OpRecord(row, node.op_type, simple, 0, g.elements(node)))
            elif node.op_type not in SHAPE_OPS:
                uncounted[node.op_type] = uncounted.get(node.op_type, 0) + 1
            continue
        except _Unknown as e:
            key = "Einsum (no contraction)" if isinstance(e, _NoContraction) else f"{node.op_type} (shape unknown)"
            uncounted[key] = uncounted.get(key, 0) + 1
            continue
        except (DscalcError, _Malformed) as e:
            raise BadInput(f"{node_label(node, index)}: {e}", "model") from None
        except Exception as e:  # anything else a malformed node makes the arithmetic raise
            raise BadInput(f"{node_label(node, index)}: malformed ({type(e).__name__}: {first_line(e)})",
                           "model") from None
        for op_kind, macs, layer in costs:
            records.append(OpRecord(row, node.op_type, op_kind, macs, g.elements(node), layer))
    per_row, params, buffers = _parameters(g, model, rows, stored)
    outputs = [_full(g.shapes.get(o.name)) or () for o in model.graph.output]
    trace = Trace(records, uncounted, types, per_row, params, list(shapes), [tuple(o) for o in outputs])
    result = summarize(trace, depth)
    result.totals["buffers"] = buffers
    return result

"""TFLite / LiteRT flatbuffers (`.tflite`), profiled from the file alone with the `tflite` flatbuffer parser
package (dscalc[tflite]): no TensorFlow, no torch. One record per operator of the main subgraph at the shapes
stored in the file - convolutions (CONV_2D, DEPTHWISE_CONV_2D with its depth multiplier, TRANSPOSE_CONV, CONV_3D,
CONV_3D_TRANSPOSE) costed by the engine (`dscalc.cost.layers.conv`, so the separable what-if is
`cost.kinds.separable_of` as for any layer), FULLY_CONNECTED and BATCH_MATMUL as multiply-accumulates, the LSTM/RNN
family as one multiply-accumulate per weight element per step - and `trace.summary` turns them into the rows,
totals and by-kind totals every other format gets. Every other builtin op is a zero-MAC record of its family
(element-wise, pooling/reduction, normalization, data movement) or listed as uncounted by name.

Rows are named after the op's output tensor: its first location (a fused op's name lists every fused location,
`a;;b;;c;`), the one of the op's own kind where there is one, and litert-torch's `pkg.Class_attr/...` scopes become
the torch module path (`features.1.conv.0.0`), so that the rows line up with the torch model's modules.

Conventions: parameters are the file's constant tensors that hold weights - floating-point constants of the
computing ops (not a literal: a one-element constant, or a constant of a data-movement op such as PADV2's -inf),
the (integer) weights and biases of the MAC ops, and the stored tensor behind a DEQUANTIZE (float16 or
int8 weights) - each stored buffer counted once (the converter shares one buffer among equal constants, e.g. the
all-zero biases of an untrained model), in the row of the first op that uses it. The converter folds BatchNorm into the
convolution before it, so a conv's params are its weights plus the folded bias and no BatchNorm parameters remain.
Bytes are every tensor at its own stored dtype (int8 activations one byte, float16 weights two), whatever --dtype
says. MACs of an op whose weights are int8/uint8 (static, per-tensor or per-channel, or dynamic-range hybrid kernels
that quantize the activations on the fly) are int8 MACs (`mac_dtype`); with int16 activations they are int16x8.
"""

from __future__ import annotations

import math
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dscalc.cost.formulas import same_padding
from dscalc.cost.layers import conv
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput, DscalcError, first_line
from dscalc.trace.records import OpRecord, ProfileResult, Size, Trace
from dscalc.trace.summary import summarize

ModelSource = Any  # trace.source.ModelSource

#: the largest file opened (flatbuffers address 2 GiB; weights may follow the flatbuffer, addressed by offset)
MAX_FILE_BYTES = 1 << 34
#: the most dimensions a tensor may have, and the most elements (every derived count stays a finite int64)
MAX_RANK = 16
MAX_ELEMENTS = 1 << 62
MAX_DIM = 2**31 - 1

#: TensorType -> (name, bytes per element); INT4 is half a byte (packed)
_TYPES: dict[int, tuple[str, float]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8), 5: ("string", 0),
    6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1), 10: ("float64", 8), 11: ("complex128", 16),
    12: ("uint64", 8), 13: ("resource", 0), 14: ("variant", 0), 15: ("uint32", 4), 16: ("uint16", 2), 17: ("int4", 0.5),
    18: ("bfloat16", 2),
}
_FLOATS = frozenset({"float32", "float16", "float64", "bfloat16"})
_INT_WEIGHTS = frozenset({"int8", "uint8", "int4", "int16"})

#: (weight slots, bias slot) of the MAC ops: where their parameters sit among the inputs
_CONVS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "CONV_3D": (1, 2), "TRANSPOSE_CONV": (1, 3),
          "CONV_3D_TRANSPOSE": (1, 3)}
_RECURRENT = frozenset({"LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
                        "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN"})

ELEMENTWISE = frozenset({
    "ADD", "ADD_N", "SUB", "MUL", "DIV", "FLOOR_DIV", "FLOOR_MOD", "POW", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM",
    "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "ELU", "GELU", "HARD_SWISH", "LOGISTIC",
    "TANH", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIGN", "SIN", "COS", "FLOOR", "CEIL", "ROUND",
    "SOFTMAX", "LOG_SOFTMAX", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL",
    "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SELECT", "SELECT_V2", "QUANTIZE", "DEQUANTIZE", "FAKE_QUANT",
    "CUMSUM", "ATAN2", "BITWISE_XOR", "RIGHT_SHIFT", "ZEROS_LIKE", "ONES_LIKE", "REAL", "IMAG", "COMPLEX_ABS",
})
POOLS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN",
                   "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL", "ARG_MAX", "ARG_MIN"})
NORMS = frozenset({"L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION"})
#: ops that move, reshape, resize, select or create data and multiply nothing: zero-MAC records of kind `other`
MOVES = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "SLICE",
    "STRIDED_SLICE", "GATHER", "GATHER_ND", "SCATTER_ND", "PAD", "PADV2", "MIRROR_PAD", "TILE", "BROADCAST_TO",
    "SHAPE", "RANK", "CAST", "FILL", "RANGE", "REVERSE_V2", "REVERSE_SEQUENCE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "EMBEDDING_LOOKUP",
    "ONE_HOT", "WHERE", "BROADCAST_ARGS", "MATRIX_DIAG", "MATRIX_SET_DIAG", "DYNAMIC_UPDATE_SLICE", "BITCAST",
    "DILATE", "UNIQUE", "SPARSE_TO_DENSE",
})


@dataclass
class Tensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    constant: bool
    variable: bool
    buffer: int  # the buffer that holds its data (the converter shares one buffer among equal constants)
    scales: int  # quantization scales (0: not quantized; >1: per-channel)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        width = _TYPES.get(_type_code(self.dtype), ("", 0))[1]
        return math.ceil(self.elements * width)


def _type_code(name: str) -> int:
    return next((k for k, (n, _) in _TYPES.items() if n == name), -1)


@dataclass
class Op:
    index: int
    name: str  # the builtin operator's name (CONV_2D), or CUSTOM:code
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    options: dict[str, int]  # the fields of its BuiltinOptions that dscalc reads


@dataclass
class TfliteModel:
    """A parsed .tflite file: the main subgraph's tensors and operators."""

    path: str
    ops: list[Op]
    inputs: list[Tensor]
    outputs: list[Tensor]
    subgraphs: int
    version: int
    tensors: list[Tensor] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- loading

def _bad(path: Any, why: str) -> BadInput:
    return BadInput(f"{path} is not a valid TFLite model: {why}", "model")


def load(source: ModelSource, device: str = "cpu") -> TfliteModel:
    """The parsed file (bad input, one line, for a file that is not a well-formed TFLite flatbuffer)."""
    return read(Path(source.path))


def read(path: Path) -> TfliteModel:
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", "model") from None
    if size > MAX_FILE_BYTES:
        raise _bad(path, f"{size:,} bytes is more than the {MAX_FILE_BYTES:,} dscalc opens")
    if size < 16:
        raise _bad(path, f"{size} bytes is too short for a flatbuffer")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[4:8] != b"TFL3":
                raise _bad(path, f"its file identifier is {bytes(buf[4:8])!r}, not b'TFL3'")
            return _parse(buf, size, str(path))
    except DscalcError:
        raise
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {path}: {first_line(e)}", "model") from None
    except Exception as e:  # struct.error, IndexError, UnicodeDecodeError...: offsets that point nowhere
        raise _bad(path, f"the flatbuffer is damaged ({type(e).__name__}: {first_line(e, 80)})") from None


def _length(n: int, size: int, what: str, path: str) -> int:
    """A vector's length, checked against the file (each element takes at least 4 bytes)."""
    if n < 0 or n * 4 > size:
        raise _bad(path, f"{what} claims {n:,} entries in a {size:,}-byte file")
    return n


def _parse(buf: Any, size: int, path: str) -> TfliteModel:
    import tflite  # the flatbuffer schema (dscalc[tflite])

    model = tflite.Model.GetRootAsModel(buf, 0)
    n_graphs = _length(model.SubgraphsLength(), size, "the subgraph list", path)
    if n_graphs == 0:
        raise _bad(path, "it holds no subgraph")
    n_buffers = _length(model.BuffersLength(), size, "the buffer list", path)
    n_codes = _length(model.OperatorCodesLength(), size, "the operator-code list", path)
    codes = []
    for i in range(n_codes):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == tflite.BuiltinOperator.CUSTOM:
            codes.append("CUSTOM:" + (oc.CustomCode() or b"?").decode(errors="replace"))
        else:
            codes.append(tflite.BUILTIN_OPCODE2NAME.get(code, f"BUILTIN_{code}"))
    graph = model.Subgraphs(0)
    n_tensors = _length(graph.TensorsLength(), size, "the tensor list", path)
    constant_buffers: dict[int, bool] = {}

    def is_constant(b: int) -> bool:
        if b not in constant_buffers:
            if not 0 <= b < n_buffers:
                raise _bad(path, f"a tensor names buffer {b} of {n_buffers}")
            data = model.Buffers(b)
            constant_buffers[b] = b > 0 and data is not None and (data.DataLength() > 0 or
                                                                  (data.Offset() > 1 and data.Size() > 0))
        return constant_buffers[b]

    tensors: list[Tensor] = []
    for i in range(n_tensors):
        t = graph.Tensors(i)
        rank = t.ShapeLength()
        if not 0 <= rank <= MAX_RANK:
            raise _bad(path, f"tensor {i} has {rank} dimensions (at most {MAX_RANK})")
        dims = tuple(int(t.Shape(j)) for j in range(rank))
        if any(d < 0 or d > MAX_DIM for d in dims):
            raise _bad(path, f"tensor {i} has a dimension outside 0..{MAX_DIM:,}: {list(dims)}")
        if math.prod(dims) > MAX_ELEMENTS:
            raise _bad(path, f"tensor {i} of shape {'x'.join(map(str, dims))} has more than 2**62 elements")
        code = int(t.Type())
        q = t.Quantization()
        scales = q.ScaleLength() if q is not None else 0
        tensors.append(Tensor(i, (t.Name() or b"").decode(errors="replace"), _TYPES.get(code, (f"type{code}", 0))[0],
                              dims, is_constant(int(t.Buffer())), bool(t.IsVariable()), int(t.Buffer()),
                              int(scales)))

    def tensor(j: int) -> Tensor | None:
        if j == -1:
            return None  # an optional input left out
        if not 0 <= j < n_tensors:
            raise _bad(path, f"an operator names tensor {j} of {n_tensors}")
        return tensors[j]

    ops = []
    n_ops = _length(graph.OperatorsLength(), size, "the operator list", path)
    for i in range(n_ops):
        op = graph.Operators(i)
        k = int(op.OpcodeIndex())
        if not 0 <= k < n_codes:
            raise _bad(path, f"operator {i} names operator code {k} of {n_codes}")
        ins = [tensor(int(op.Inputs(j))) for j in range(_length(op.InputsLength(), size, "an input list", path))]
        outs = [tensor(int(op.Outputs(j))) for j in range(_length(op.OutputsLength(), size, "an output list", path))]
        ops.append(Op(i, codes[k], ins, [t for t in outs if t is not None], _options(tflite, codes[k], op)))
    io = []
    for vector, length in ((graph.Inputs, graph.InputsLength()), (graph.Outputs, graph.OutputsLength())):
        found = [tensor(int(vector(j))) for j in range(_length(length, size, "the graph's inputs", path))]
        io.append([t for t in found if t is not None])
    return TfliteModel(path, ops, io[0], io[1], n_graphs, int(model.Version()), tensors)


#: the options table of each op dscalc reads options from
_OPTION_TABLES = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                  "TRANSPOSE_CONV": "TransposeConvOptions", "CONV_3D": "Conv3DOptions",
                  "CONV_3D_TRANSPOSE": "Conv3DOptions", "BATCH_MATMUL": "BatchMatMulOptions",
                  "FULLY_CONNECTED": "FullyConnectedOptions"}


def _options(tflite: Any, name: str, op: Any) -> dict[str, int]:
    """The op's options as plain values (read now: the file is closed after parsing)."""
    table = _OPTION_TABLES.get(name)
    raw = op.BuiltinOptions() if table is not None else None
    if raw is None or table is None:
        return {}
    opts = getattr(tflite, table)()
    opts.Init(raw.Bytes, raw.Pos)
    fields = ("Padding", "StrideD", "StrideH", "StrideW", "DilationDFactor", "DilationHFactor", "DilationWFactor",
              "DepthMultiplier", "AdjX", "AdjY", "KeepNumDims")
    return {f: int(getattr(opts, f)()) for f in fields if hasattr(opts, f)}


# ---------------------------------------------------------------------------------------------------- names

_SCOPE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*?)_(\w+)$")


def _module_path(location: str) -> str:
    """litert-torch's `pkg.Model/pkg.Sequential_features/pkg.Conv2d_0` -> `features.0`; any other name as it is."""
    parts = location.split("/")
    if len(parts) < 2 or "." not in parts[0]:
        return location
    out = []
    for part in parts[1:]:
        m = _SCOPE.match(part)
        if m is None:
            return location
        out.append(m.group(2))
    return ".".join(out)


def _row_name(op: Op) -> str:
    """The row an op belongs to: from its first output's name (the location of the op's own kind where a fused op
    lists several)."""
    name = op.outputs[0].name if op.outputs else ""
    locations = [re.sub(r";\d*$", "", part) for part in name.split(";;") if part]
    locations = [loc.rstrip(";") for loc in locations if loc.rstrip(";")]
    if not locations:
        return name or f"{op.name}_{op.index}"
    wanted = "Conv" if op.name in _CONVS else "Linear" if op.name in ("FULLY_CONNECTED", "BATCH_MATMUL") else None
    chosen = next((loc for loc in locations if wanted and wanted in loc.rsplit("/", 1)[-1]), locations[-1])
    return _module_path(chosen) or chosen


# ---------------------------------------------------------------------------------------------------- costs

class _Unknown(Exception):
    """An op whose operands are missing or of a shape it cannot take."""


def _need(op: Op, slot: int, rank: int | None = None) -> Tensor:
    t = op.inputs[slot] if slot < len(op.inputs) else None
    if t is None or (rank is not None and len(t.shape) != rank):
        raise _Unknown
    return t


def _padding(opts: dict[str, int], spatial: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
             dilations: tuple[int, ...]) -> Any:
    if opts.get("Padding") == 1:  # Padding.VALID
        return 0
    return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilations))


def _get(opts: dict[str, int], *names: str) -> tuple[int, ...]:
    """Strides or dilation factors (1 where the file leaves them out)."""
    return tuple(opts.get(n) or 1 for n in names)


def _has_bias(op: Op, slot: int) -> bool:
    return slot < len(op.inputs) and op.inputs[slot] is not None


def _conv(op: Op, row: str) -> LayerCost:
    opts = op.options
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x, w = _need(op, 0, 4), _need(op, 1, 4)
        n, *spatial, c = x.shape
        kernel = tuple(w.shape[1:3])
        strides = _get(opts, "StrideH", "StrideW")
        dilations = _get(opts, "DilationHFactor", "DilationWFactor")
        if op.name == "DEPTHWISE_CONV_2D":  # weights 1 x KH x KW x (C * depth multiplier)
            cout, groups = w.shape[3], c
        else:  # weights O x KH x KW x I; C / I groups
            cout, groups = w.shape[0], c // max(w.shape[3], 1)
    elif op.name == "CONV_3D":
        x, w = _need(op, 0, 5), _need(op, 1, 5)  # weights KD x KH x KW x I x O
        n, *spatial, c = x.shape
        kernel, cout, groups = tuple(w.shape[:3]), w.shape[4], c // max(w.shape[3], 1)
        strides = _get(opts, "StrideD", "StrideH", "StrideW")
        dilations = _get(opts, "DilationDFactor", "DilationHFactor", "DilationWFactor")
    else:
        return _transposed(op, row)
    pads = _padding(opts, tuple(spatial), kernel, strides, dilations)
    layer = conv(c, cout, kernel, tuple(spatial), batch=n, stride=strides, padding=pads, dilation=dilations,
                 groups=groups, bias=_has_bias(op, 2), name=row)
    _check_output(op, layer, cout)
    return layer


def _transposed(op: Op, row: str) -> LayerCost:
    """TRANSPOSE_CONV (output shape, weights O x KH x KW x I, input, bias) and CONV_3D_TRANSPOSE (weights
    KD x KH x KW x O x I): the padding that gives the stored output shape (TFLite has no output padding; a larger
    output is zeros appended at the end, torch's output_padding)."""
    opts = op.options
    d = 2 if op.name == "TRANSPOSE_CONV" else 3
    w, x = _need(op, 1, d + 2), _need(op, 2, d + 2)
    if not op.outputs or len(op.outputs[0].shape) != d + 2:
        raise _Unknown
    n, *spatial, c = x.shape
    out = op.outputs[0].shape[1:-1]
    if d == 2:
        kernel, cout, per_group = tuple(w.shape[1:3]), w.shape[0], w.shape[3]
        strides = _get(opts, "StrideH", "StrideW")
    else:
        kernel, cout, per_group = tuple(w.shape[:3]), w.shape[3], w.shape[4]
        strides = _get(opts, "StrideD", "StrideH", "StrideW")
    groups = c // max(per_group, 1)
    pads, extra = [], []
    for size, k, s, o in zip(spatial, kernel, strides, out):
        total = s * (size - 1) + k - o
        extra.append(max(-total, 0))
        total = max(total, 0)
        pads.append((total // 2, total - total // 2))
    layer = conv(c, cout, kernel, tuple(spatial), batch=n, stride=strides, padding=tuple(pads), groups=groups,
                 bias=_has_bias(op, 3), transposed=True, output_padding=tuple(extra), name=row)
    _check_output(op, layer, cout)
    return layer


def _check_output(op: Op, layer: LayerCost, cout: int) -> None:
    if op.outputs:
        stored = op.outputs[0].shape
        expected = (layer.output_shape[0], *layer.output_shape[2:], cout)
        if tuple(stored) != tuple(expected):
            raise BadInput(f"operator {op.index} ({op.name}) stores output {'x'.join(map(str, stored))}, but its "
                           f"input and weights give {'x'.join(map(str, expected))}", "model")


def _batch_matmul(op: Op) -> int:
    a, b = _need(op, 0), _need(op, 1)
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise _Unknown
    opts = op.options
    adj_x, adj_y = bool(opts.get("AdjX", 0)), bool(opts.get("AdjY", 0))
    m, k = (a.shape[-1], a.shape[-2]) if adj_x else (a.shape[-2], a.shape[-1])
    cols = b.shape[-2] if adj_y else b.shape[-1]
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = (1,) * (width - len(batch_a)) + batch_a
    batch_b = (1,) * (width - len(batch_b)) + batch_b
    return math.prod(max(p, q) for p, q in zip(batch_a, batch_b)) * m * k * cols


def _fully_connected(op: Op) -> int:
    """Every row of the input (its elements / the weights' K) times the O x K weights."""
    x, w = _need(op, 0), _need(op, 1, 2)
    out_features, k = w.shape
    if not k or x.elements % k:
        raise _Unknown
    return x.elements // k * k * out_features


def _recurrent(op: Op, weights: dict[int, Tensor]) -> int:
    """One MAC per element of every 2-D weight matrix (input, recurrent, projection) per step and batch row."""
    x = _need(op, 0)
    if not x.shape or not x.shape[-1]:
        raise _Unknown
    rows = x.elements // x.shape[-1]
    matrices = [t for slot, t in enumerate(op.inputs) if slot and t is not None and len(t.shape) == 2
                and weights.get(t.index) is not None]
    return rows * sum(t.elements for t in matrices)


# -------------------------------------------------------------------------------------------------- profile

def _quantization(x: Tensor | None, w: Tensor | None) -> tuple[str, str]:
    """(mac_dtype, description) of a MAC op from its activation and (stored) weight dtypes."""
    if w is None:
        return "", ""
    per = "per-channel" if w.scales > 1 else "per-tensor"
    if w.dtype in _INT_WEIGHTS:
        if x is not None and x.dtype in ("int8", "uint8"):
            return "int8", f"{w.dtype} {per}"
        if x is not None and x.dtype == "int16":
            return "int16x8", f"int16 activations, {w.dtype} weights {per}"
        return "int8", f"dynamic-range {w.dtype} weights {per}"
    if w.dtype != "float32" and w.dtype in _FLOATS:
        return "", f"{w.dtype} weights"
    return "", ""


def _shapes_check(model: TfliteModel, shapes: list[tuple[int, ...]]) -> None:
    """--input, when given, must be the shapes stored in the file (its ops' shapes are fixed there)."""
    if not shapes:
        return
    stored = [t.shape for t in model.inputs]
    if len(shapes) != len(stored) or any(tuple(a) != tuple(b) for a, b in zip(shapes, stored)):
        shown = ", ".join("x".join(map(str, s)) or "scalar" for s in stored)
        raise BadInput(f"a .tflite file stores its shapes and is counted at them: {shown} (got "
                       f"{', '.join('x'.join(map(str, s)) for s in shapes)}); leave --input out", "input")


def declared_inputs(source: ModelSource) -> list[tuple[int, ...]]:
    """The input shapes stored in the file."""
    return [t.shape for t in source.load().inputs]


def profile(source: ModelSource, shapes: list[tuple[int, ...]], depth: int | None = None) -> ProfileResult:
    """Rows, totals and totals by op kind of a .tflite model at the shapes stored in it."""
    model: TfliteModel = source.load()
    _shapes_check(model, shapes)
    # a DEQUANTIZE of a constant is the stored weight (float16 or int8) in float32: its consumers use that weight
    stored_of: dict[int, Tensor] = {}
    for op in model.ops:
        if op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] is not None and op.inputs[0].constant \
                and op.outputs:
            stored_of[op.outputs[0].index] = op.inputs[0]

    def stored(t: Tensor | None) -> Tensor | None:
        return None if t is None else stored_of.get(t.index, t)

    def constant(t: Tensor | None) -> Tensor | None:
        """The stored constant behind an operand (through a DEQUANTIZE), None for an activation."""
        s = stored(t)
        return s if s is not None and s.constant else None

    records: list[OpRecord] = []
    uncounted: dict[str, int] = {}
    types: dict[str, str] = {}
    per_row: dict[str, int] = {}
    roles: dict[str, dict[str, int]] = {}
    claimed: set[int] = set()
    params = quantized = 0
    weight_bytes = 0
    kinds_seen: set[str] = set()
    mac_rows: set[str] = set()

    def claim(row: str, t: Tensor, role: str) -> None:
        nonlocal params, quantized, weight_bytes
        claimed.add(t.buffer)
        params += t.elements
        weight_bytes += t.nbytes
        per_row[row] = per_row.get(row, 0) + t.elements
        if t.dtype not in _FLOATS:
            quantized += t.elements
        if role:
            roles.setdefault(row, {}).setdefault(role, 0)
            roles[row][role] += t.elements

    rows = []
    for op in model.ops:
        row = _row_name(op)
        rows.append(row)
        slots = _CONVS.get(op.name) or ((1, 2) if op.name == "FULLY_CONNECTED" else
                                        (0, 1) if op.name == "BATCH_MATMUL" else ())
        weight_slots = set(range(1, len(op.inputs))) if op.name in _RECURRENT else set(slots)
        if op.name == "EMBEDDING_LOOKUP":
            weight_slots = {1}
        for slot, t in enumerate(op.inputs):
            s = stored(t)
            if s is None or not s.constant or s.variable or s.buffer in claimed or op.name == "DEQUANTIZE":
                continue
            literal = slot not in weight_slots and (op.name in MOVES or s.elements <= 1)
            if (s.dtype in _FLOATS and not literal) or slot in weight_slots:
                bias_slot = slots[-1] if slots and op.name != "BATCH_MATMUL" else -1
                claim(row, s, "bias" if slot == bias_slot else "weight" if slot in weight_slots else "")
        activation = op.inputs[2] if op.name in ("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE") and len(op.inputs) > 2 \
            else op.inputs[0] if op.inputs else None
        if op.name in _RECURRENT:
            weight = next((constant(t) for t in op.inputs[1:] if t is not None and constant(t) is not None
                           and len(t.shape) == 2), None)
        else:
            weight = constant(op.inputs[1]) if len(op.inputs) > 1 and slots else None
        mac_dtype, quant = _quantization(activation, weight)
        if quant:
            kinds_seen.add(quant)
        shown = f"{op.name} ({quant})" if quant else op.name
        elements = op.outputs[0].elements if op.outputs else 0
        reads = Size(fixed_bytes=sum(t.nbytes for t in {t.index: t for t in op.inputs if t is not None}.values()))
        writes = Size(fixed_bytes=sum(t.nbytes for t in op.outputs))
        try:
            if op.name in _CONVS:
                layer = _conv(op, row)
                cost: tuple[str, int, LayerCost | None] | None = ("conv", layer.macs, layer)
            elif op.name == "FULLY_CONNECTED":
                cost = ("linear" if weight is not None else "matmul", _fully_connected(op), None)
            elif op.name == "BATCH_MATMUL":
                cost = ("linear" if weight is not None else "matmul", _batch_matmul(op), None)
            elif op.name in _RECURRENT:
                weights = {t.index: t for t in op.inputs if t is not None and constant(t) is not None}
                cost = ("recurrent", _recurrent(op, weights), None)
            else:
                cost = None
        except _Unknown:
            key = f"{op.name} (operands of an unexpected shape)"
            uncounted[key] = uncounted.get(key, 0) + 1
            continue
        except BadInput:
            raise
        except DscalcError as e:
            raise BadInput(f"operator {op.index} ({op.name}): {e}", "model") from None
        if cost is not None:
            kind, macs, layer_cost = cost
            if row not in mac_rows:  # a row is named after its first MAC op (not the PAD before a conv)
                types[row] = shown
                mac_rows.add(row)
            records.append(OpRecord(row, op.name, kind, macs, elements, layer_cost, reads=reads, writes=writes,
                                    mac_dtype=mac_dtype))
            continue
        simple = ("elementwise" if op.name in ELEMENTWISE else "pooling" if op.name in POOLS else
                  "batchnorm" if op.name in NORMS else "other" if op.name in MOVES else None)
        if simple is None:
            uncounted[op.name] = uncounted.get(op.name, 0) + 1
            continue
        types.setdefault(row, shown)
        records.append(OpRecord(row, op.name, simple, 0, elements, reads=reads, writes=writes))
    # a stored weight whose DEQUANTIZE feeds no counted op still counts, in the DEQUANTIZE's row
    for op, row in zip(model.ops, rows):
        if op.name == "DEQUANTIZE" and op.inputs and op.inputs[0] is not None and op.inputs[0].constant \
                and op.inputs[0].buffer not in claimed:
            claim(row, op.inputs[0], "")
    inputs_bytes = sum(t.nbytes for t in model.inputs)
    trace = Trace(records, uncounted, types, per_row, params, [t.shape for t in model.inputs],
                  [t.shape for t in model.outputs], notes=_notes(model, kinds_seen),
                  weights=Size(fixed_bytes=weight_bytes), inputs=Size(fixed_bytes=inputs_bytes),
                  quantized_params=quantized)
    result = summarize(trace, depth)
    _set_roles(result, roles, depth)
    return result


def _set_roles(result: ProfileResult, roles: dict[str, dict[str, int]], depth: int | None) -> None:
    """Each row's weights and (folded) biases, and their totals (summary takes them from torch's module types)."""
    def group(name: str) -> str:
        return ".".join(name.split(".")[:depth]) if depth is not None else name

    for r in result.rows:
        name = "" if r.name == "(model)" else r.name
        r.weights = sum(v.get("weight", 0) for n, v in roles.items() if group(n) == name)
        r.bias = sum(v.get("bias", 0) for n, v in roles.items() if group(n) == name)
    result.totals["weights"] = sum(v.get("weight", 0) for v in roles.values())
    result.totals["bias"] = sum(v.get("bias", 0) for v in roles.values())


def _notes(model: TfliteModel, quantization: set[str]) -> list[str]:
    notes = [f"TFLite flatbuffer (schema version {model.version}), read with the tflite package: the main "
             "subgraph at the shapes stored in the file; conv rows show their shapes NCHW, the file's tensors are "
             "NHWC",
             "the converter folds BatchNorm into the convolution before it: params are the file's weights + folded "
             "biases (no BatchNorm parameters remain), so they can differ from the source model's count",
             "bytes: every tensor at its own stored dtype (--dtype does not apply)"]
    if quantization:
        notes.append("quantized ops (MACs of int8 kernels are int8 MACs, mac_dtype): "
                     + "; ".join(sorted(quantization)))
    if model.subgraphs > 1:
        notes.append(f"{model.subgraphs - 1} further subgraph(s) (control-flow bodies) are not counted")
    return notes

"""Fusion-aware whole-model prediction: a traced model's ops grouped into the units a runtime actually runs; each
kernel that runs predicted alone plus two in-network terms - its bytes at a network bandwidth and an overhead per
kernel - fitted on the calibration's reference chains timed whole (`fit_network`); where a runtime's chains ran no
slower than their kernels alone (ONNX Runtime), one factor per unit pattern instead, learned from short chains of
such units measured whole (issue 31).

A unit is one of these patterns, recognised from the trace's op sequence and module paths:

- `conv`:      a convolution (standard, pointwise, grouped, transposed) + its batch norm + its activation
- `depthwise`: a depthwise convolution + batch norm + activation
- `se`:        squeeze-excite: global pool -> 1x1 conv/linear -> activation -> 1x1 conv/linear -> gate -> mul
- `shuffle`:   a ShuffleNet channel shuffle (cat + view/transpose/contiguous/view). Those are shape ops the trace
               does not record: the unit is recognised by the block's structure (a module whose ops come from
               children named `branch1`/`branch2`, ShuffleNet v2's), and its kernels are the two copies eager runs
               (the cat and the contiguous transpose) of the block's output
- `residual`:  an add of two full tensors (a skip connection) + its activation
- `other`:     any other op, alone (its factor is the calibration's `in_network`)

Which kernels of a unit a runtime runs (`runs`): torch eager runs every op alone (an inplace activation is still
a kernel of its own; eager does not fold batch norm in eval mode). ONNX Runtime folds BatchNorm into the preceding
Conv ("Conv BatchNorm Fusion", a basic optimization) and fuses Conv + Relu/Clip/Sigmoid/Tanh/LeakyRelu/HardSigmoid
("Conv Activation Fusion", extended, CPU) - HardSwish and SiLU stay nodes of their own; LiteRT folds batch norm at
conversion and XNNPACK fuses clamps (ReLU, ReLU6) into the conv; torch.compile (inductor, no freezing) calls the
conv as an external kernel and fuses each run of pointwise ops (batch norm + activation, add + activation) into
one kernel. Whatever else a runtime does (the residual add that ONNX Runtime's NCHWc layout folds into a conv,
cache effects inside a network) is left to the network terms, or to the learned factor of the unit's pattern.

Pure Python, no torch, except `calibrate_units`, which builds and times the chains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from dscalc.cost.dtypes import itemsize
from dscalc.cost.layers import conv
from dscalc.cost.opkinds import NORM_KINDS
from dscalc.cost.records import LayerCost
from dscalc.measure.predict import NO_RATE, UNIT_PATTERNS, Kernel, kernel_of, least_squares

if TYPE_CHECKING:
    from dscalc.measure.predict import Calibration
    from dscalc.measure.settings import Settings


class _Sized(Protocol):
    @property
    def elements(self) -> int: ...

    def bytes(self, dtype: str) -> int: ...


class Op(Protocol):
    """What the grouping reads of an op: a traced `trace.records.OpRecord`, or a calibration chain's `ChainOp`."""

    @property
    def module(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def macs(self) -> int: ...
    @property
    def elements(self) -> int: ...
    @property
    def layer(self) -> LayerCost | None: ...
    @property
    def reads(self) -> _Sized: ...
    @property
    def writes(self) -> _Sized: ...
    @property
    def io(self) -> tuple[tuple[int, ...], ...]: ...
    @property
    def window(self) -> int: ...

#: the unit patterns, `other` last (its factor is the calibration's in-network one); the patterns a calibration
#: learns a factor for are named beside the Calibration's field (`measure.predict.UNIT_PATTERNS`)
LEARNED = UNIT_PATTERNS
PATTERNS = (*LEARNED, "other")

#: single-input activations (aten base names, without a trailing underscore)
ACTIVATIONS = {"relu", "relu6", "hardtanh", "clamp", "clamp_min", "sigmoid", "hardsigmoid", "hardswish", "silu",
               "gelu", "tanh", "leaky_relu", "elu", "mish", "softplus"}
GATES = {"sigmoid", "hardsigmoid"}
#: per runtime, the activations it fuses into the preceding conv (None: none; eager fuses nothing)
_CONV_ACTS: dict[str, set[str]] = {
    "onnxruntime": {"relu", "relu6", "hardtanh", "clamp", "clamp_min", "sigmoid", "tanh", "leaky_relu",
                    "hardsigmoid"},
    "litert": {"relu", "relu6", "hardtanh", "clamp", "clamp_min"},
}
#: the runtimes that fold a batch norm into the preceding conv
_FOLDS_BN = {"onnxruntime", "litert"}


@dataclass(frozen=True)
class Unit:
    """One unit a runtime runs: its pattern, the module it belongs to, the indices of its traced ops, those whose
    kernels the runtime runs, and kernels it runs that the trace does not record (a shuffle's copies)."""

    pattern: str
    module: str
    ops: tuple[int, ...]
    runs: tuple[int, ...]
    extra: tuple[Kernel, ...] = ()


def base(op: str) -> str:
    """aten.hardswish_.default -> hardswish."""
    parts = op.split(".")
    return (parts[1] if len(parts) > 2 and parts[0] in ("aten", "quantized", "prims") else parts[0]).rstrip("_")


def _is_act(op: Op) -> bool:
    return op.kind == "elementwise" and base(op.op) in ACTIVATIONS


def _is_residual(op: Op) -> bool:
    """An add of two tensors of the output's size (a skip connection), not a bias or a scalar."""
    return op.kind == "elementwise" and base(op.op) == "add" and op.reads.elements >= 2 * op.elements > 0


def _is_global_pool(op: Op) -> bool:
    if op.kind != "pooling" or not op.io or len(op.io) < 2:
        return False
    out = op.io[1]
    return len(out) >= 2 and all(d == 1 for d in out[2:]) and op.elements < (math.prod(op.io[0]) or 1)


def _is_product(op: Op) -> bool:
    return op.kind in ("conv", "linear", "matmul")


def _se_end(ops: Sequence[Op], i: int) -> int | None:
    """The index of the mul that closes a squeeze-excite block starting at the global pool ops[i], else None."""
    if not _is_global_pool(ops[i]):
        return None
    j, n = i + 1, len(ops)
    if j >= n or not _is_product(ops[j]):
        return None
    j += 1
    if j < n and _is_act(ops[j]):  # the middle activation (optional; any, a sigmoid included)
        j += 1
    if j >= n or not _is_product(ops[j]):
        return None
    j += 1
    if j >= n or not (_is_act(ops[j]) and base(ops[j].op) in GATES):
        return None
    j += 1
    pooled = math.prod(ops[i].io[0]) if ops[i].io else 0
    if j < n and ops[j].kind == "elementwise" and base(ops[j].op) == "mul" and ops[j].elements == pooled:
        return j
    return None


def _runs(pattern: str, members: Sequence[int], ops: Sequence[Op], runtime: str) -> tuple[int, ...]:
    """The members whose kernels `runtime` runs (the rest are folded or fused away)."""
    if runtime == "compile":  # inductor: each run of pointwise ops (norms, elementwise) is one kernel
        kept: list[int] = []
        for prev, i in zip((None, *members), members):
            pointwise = ops[i].kind in ("batchnorm", "elementwise")
            if pointwise and prev is not None and ops[prev].kind in ("batchnorm", "elementwise"):
                continue
            kept.append(i)
        return tuple(kept)
    if pattern in ("conv", "depthwise") and runtime in _FOLDS_BN:
        acts = _CONV_ACTS.get(runtime, set())
        return tuple(i for i in members if ops[i].kind == "conv"
                     or (ops[i].kind == "elementwise" and base(ops[i].op) not in acts))
    return tuple(members)


def _shuffle_blocks(ops: Sequence[Op]) -> dict[str, int]:
    """ShuffleNet v2 blocks: module path -> the index of the last op of its `branch2` (where the block's output
    is concatenated and shuffled)."""
    last: dict[str, int] = {}
    for i, op in enumerate(ops):
        parts = op.module.split(".")
        if "branch2" in parts:
            last[".".join(parts[:parts.index("branch2")])] = i
    return last


def units(ops: Sequence[Op], runtime: str = "eager", dtype: str = "float32", copies: Sequence[Op] = ()) -> list[Unit]:
    """A traced model's ops grouped into the units `runtime` runs, in order (every op in exactly one unit; a
    shuffle unit has no traced op, only its copies), and each of the trace's `copies` that no shuffle claims as
    an `other` unit of its own, at the end. A shuffle's copies are the trace's copies in its block where the
    trace recorded them (a torch trace), else the two an eager ShuffleNet block makes (a cat and a contiguous
    transpose of its output)."""
    out: list[Unit] = []
    shuffles = {end: block for block, end in _shuffle_blocks(ops).items()}
    claimed: set[int] = set()
    i, n = 0, len(ops)

    def add(pattern: str, members: list[int]) -> None:
        out.append(Unit(pattern, ops[members[0]].module, tuple(members), _runs(pattern, members, ops, runtime)))

    while i < n:
        op = ops[i]
        start = i
        se = _se_end(ops, i)
        if se is not None:
            add("se", list(range(i, se + 1)))
            i = se + 1
        elif op.kind == "conv" and op.layer is not None:
            members = [i]
            out_elements = op.elements
            j = i + 1
            while j < n and ops[j].kind == "elementwise" and ops[j].elements <= 1:  # a norm's step counter (training)
                j += 1
            if j < n and ops[j].kind == "batchnorm" and ops[j].elements == out_elements:
                members += range(i + 1, j + 1)
            nxt = members[-1] + 1
            if nxt < n and _is_act(ops[nxt]) and ops[nxt].elements == out_elements:
                members.append(nxt)
            add("depthwise" if op.layer.kind == "depthwise" else "conv", members)
            i = members[-1] + 1
        elif _is_residual(op):
            members = [i]
            if i + 1 < n and _is_act(ops[i + 1]) and ops[i + 1].elements == op.elements:
                members.append(i + 1)
            add("residual", members)
            i = members[-1] + 1
        else:
            add("other", [i])
            i += 1
        for end in range(start, i):  # a block's output: branch2's last output and as much again, concatenated
            block = shuffles.get(end)
            if block is not None:
                mine = [j for j, c in enumerate(copies) if j not in claimed and c.module == block]
                if mine:
                    claimed.update(mine)
                    out.append(Unit("shuffle", block, (), (), tuple(copy_kernel(copies[j], dtype) for j in mine)))
                else:
                    elements = 2 * ops[end].elements
                    copy = Kernel(f"{block}: channel shuffle copy", "copy", elements, 2 * elements * itemsize(dtype))
                    out.append(Unit("shuffle", block, (), (), (copy, copy)))
    out += [Unit("other", c.module, (), (), (copy_kernel(c, dtype),)) for j, c in enumerate(copies)
            if j not in claimed]
    return out


def counts(found: Iterable[Unit]) -> dict[str, int]:
    """How many units of each pattern."""
    out = dict.fromkeys(PATTERNS, 0)
    for u in found:
        out[u.pattern] += 1
    return out


# -------------------------------------------------------------------------------------------- kernels

#: a traced op's kind -> the calibrated kernel kind that models it (a conv takes its layer's kind)
_OP_KINDS = {"linear": "linear", "matmul": "linear", "attention": "linear", "recurrent": "linear",
             "pooling": "pooling", **{norm: "batchnorm" for norm in NORM_KINDS}}
_BINARY = ("add", "sub", "mul", "div", "where", "maximum", "minimum")
#: the elementwise ops that evaluate an exponential (or tanh, erf): a `transcendental` kernel, several times a
#: ReLU's time on a CPU (EfficientNet's SiLU ran 3.9x what ReLU's line predicted for it)
TRANSCENDENTAL = {"sigmoid", "silu", "gelu", "tanh", "elu", "mish", "softplus", "exp", "erf", "_softmax",
                  "_safe_softmax", "_log_softmax", "log"}


def kernel_of_op(op: Op, dtype: str) -> Kernel:
    """A traced op (`trace.records.OpRecord`, or a chain's `ChainOp`) as a kernel the calibrated model knows:
    convolutions by their layer's kind (with the layer's shape, the learned model's features), matrix products as
    `linear`, norms as batch norm, pooling by its window (`pool_kernel`), a two-operand elementwise op (add, mul,
    ...) as `add`, an exponential one (sigmoid, SiLU, GELU, ...) as `transcendental`, any other as `activation`;
    an op on a map with the map's shape (the memory probes' features). The one mapping: whole models, their
    fused units and the benchmarks all read ops through it (and a trace's copies through `copy_kernel`)."""
    flops, nbytes = 2 * op.macs if op.macs else op.elements, op.reads.bytes(dtype) + op.writes.bytes(dtype)
    if op.kind == "conv" and op.layer is not None:
        return replace(kernel_of(op.layer), name=op.op, flops=flops, bytes=nbytes)
    if op.kind == "pooling":
        return pool_kernel(op, dtype)
    if op.kind in _OP_KINDS:
        target = _OP_KINDS[op.kind]
    elif op.kind == "elementwise" and base(op.op) in _BINARY:
        target = "add"
    elif base(op.op) in TRANSCENDENTAL:
        target = "transcendental"
    else:
        target = "activation"
    if target == "batchnorm":
        flops = 2 * op.elements  # a multiply and an add per element, as the calibration's probes count it
    out = op.io[1] if len(op.io) == 2 else ()
    if target != "linear" and len(out) == 4:  # a map's shape, as the calibration's memory probes carry it
        n, c, size = out[0], out[1], out[2] * out[3]
        return Kernel(op.op, target, flops, nbytes, n, c, c, size, size, 1, 1, 1)
    return Kernel(op.op, target, flops, nbytes)


def pool_kernel(op: Op, dtype: str) -> Kernel:
    """A pooling op as the kernel that models it: a global pool (one output per map) as `globalpool`, FLOPs = its
    input elements; a windowed pool as `pooling`, FLOPs = outputs x window (a 3x3 max pool compares 9 inputs per
    output); with its shape (batch, channels, map sizes, window, stride) where the trace recorded it."""
    nbytes = op.reads.bytes(dtype) + op.writes.bytes(dtype)
    window = op.window
    shape_in, shape_out = (op.io[0], op.io[1]) if len(op.io) == 2 else ((), ())
    if len(shape_in) < 3 or not shape_out:
        return Kernel(op.op, "pooling", op.elements * max(window, 1), nbytes)
    batch, channels, size_in = shape_in[0], shape_in[1], math.prod(shape_in[2:])
    size_out = math.prod(shape_out[2:]) if len(shape_out) > 2 else 1
    if _is_global_pool(op):
        return Kernel(op.op, "globalpool", math.prod(shape_in), nbytes, batch, channels, channels, size_in, 1,
                      size_in, 1, 1)
    stride = max(1, round(math.sqrt(size_in / size_out))) if size_out else 1
    return Kernel(op.op, "pooling", op.elements * max(window, 1), nbytes, batch, channels, channels, size_in,
                  size_out, window, stride, 1)


def copy_kernel(op: Op, dtype: str) -> Kernel:
    """A copy the trace recorded beside its ops (`ProfileResult.copies`: a cat, a contiguous transpose) as a
    `copy` kernel: bytes read and written, one FLOP per element written."""
    return Kernel(op.op, "copy", op.elements, op.reads.bytes(dtype) + op.writes.bytes(dtype))


def op_kernels(ops: Sequence[Op], dtype: str) -> list[Kernel]:
    """Each op as the kernel the calibrated model predicts it by (`kernel_of_op`)."""
    return [kernel_of_op(op, dtype) for op in ops]


def unit_seconds(unit: Unit, kernels: Sequence[Kernel], seconds: Callable[[Kernel], float | None]) -> float | None:
    """The sum of the unit's kernels that run, each predicted alone (None where one cannot be predicted)."""
    total = 0.0
    for k in [*(kernels[i] for i in unit.runs), *unit.extra]:
        s = seconds(k)
        if s is None:
            return None
        total += s
    return total


def running_kernels(ops: Sequence[Op], runtime: str, dtype: str, copies: Sequence[Op] = ()) -> list[Kernel]:
    """The kernels `runtime` runs of a trace: its units' running ops and their extra kernels (a shuffle's copies),
    in order (a batch norm ONNX Runtime folds into its conv is none)."""
    kernels = op_kernels(ops, dtype)
    return [k for u in units(ops, runtime, dtype, copies) for k in [*(kernels[i] for i in u.runs), *u.extra]]


def predict(ops: Sequence[Op], dtype: str, runtime: str, seconds: Callable[[Kernel], float | None],
            factors: dict[str, float], fallback: float, copies: Sequence[Op] = (),
            network: tuple[float | None, float | None] = (None, None)) -> float | None:
    """A whole forward, the trace's `copies` included; None where a kernel cannot be predicted. With the
    calibration's `network` terms (bandwidth B, overhead c; `fit_network`): each kernel that runs, its time alone
    plus its bytes at B plus c (inside a network its data and code are not hot in cache, as they are for a kernel
    timed alone); else each unit's kernels that run, summed, times its pattern's factor (`fallback`, the
    in-network factor, for `other` and for a pattern without one)."""
    bandwidth, overhead = network
    if bandwidth or overhead:
        total = 0.0
        for k in running_kernels(ops, runtime, dtype, copies):
            s = seconds(k)
            if s is None:
                return None
            total += s + (k.bytes / bandwidth if bandwidth else 0.0) + (overhead or 0.0)
        return total
    kernels = op_kernels(ops, dtype)
    total = 0.0
    for unit in units(ops, runtime, dtype, copies):
        s = unit_seconds(unit, kernels, seconds)
        if s is None:
            return None
        total += s * factors.get(unit.pattern, fallback)
    return total


def fit_network(chains: Iterable[tuple[float, float, int, int]]) -> tuple[float | None, float | None]:
    """(measured s, its running kernels' time alone s, their bytes, how many they are) of chains timed whole ->
    (bandwidth B in bytes/s, overhead c in s per kernel) for which alone + bytes / B + kernels x c fits the
    measured times best in relative error (non-negative least squares over the subsets of the two terms, as
    `predict.fit` does); None for a term the chains do not need (they ran no slower than alone: both None)."""
    rows = [(m, a, float(b), float(n)) for m, a, b, n in chains
            if m > 0 and math.isfinite(m) and math.isfinite(a) and (b > 0 or n > 0)]
    best: tuple[float, float, float] | None = None  # loss, 1/B, c
    for cols in ((2, 3), (2,), (3,)) if rows else ():
        # sum(((alone + x . f) / m - 1)^2) is least squares in the columns f / m against 1 - alone / m
        x = least_squares([[r[i] / r[0] for i in cols] for r in rows], [1 - r[1] / r[0] for r in rows])
        if x is None or any(v <= 0 for v in x):
            continue
        full = dict(zip(cols, x))
        inv_b, c = full.get(2, 0.0), full.get(3, 0.0)
        loss = sum(((r[1] + inv_b * r[2] + c * r[3]) / r[0] - 1) ** 2 for r in rows)
        if best is None or loss < best[0]:
            best = (loss, inv_b, c)
    if best is None:
        return None, None
    _, inv_b, c = best
    return (1 / inv_b if inv_b > 1 / NO_RATE else None), (c if c > 0 else None)


def conv_chain_ops(layers: Sequence[LayerCost]) -> list[ChainOp]:
    """A chain of convolutions, each followed by batch norm and ReLU (`calibrate.reference_layers`, built by
    `calibrate._chain`), as the ops the tracer records of it: the conv (reading its input and weights), the
    batch norm (its input and 4 per-channel vectors; its output and 2 saved statistics), the ReLU."""
    ops: list[ChainOp] = []
    for i, layer in enumerate(layers):
        shape_in, shape_out = tuple(layer.input_shape), tuple(layer.output_shape)
        n, c = math.prod(shape_out), shape_out[1]
        ops += [ChainOp(str(3 * i), "aten.convolution.default", "conv", layer.macs, n,
                        Elements(math.prod(shape_in) + layer.params), Elements(n), (shape_in, shape_out), layer),
                ChainOp(str(3 * i + 1), "aten.native_batch_norm.default", "batchnorm", 0, n, Elements(n + 4 * c),
                        Elements(n + 2 * c), (shape_out, shape_out)),
                ChainOp(str(3 * i + 2), "aten.relu.default", "elementwise", 0, n, Elements(n), Elements(n),
                        (shape_out, shape_out))]
    return ops


def fit_factors(pairs: Iterable[tuple[str, float, float]]) -> dict[str, float]:
    """(pattern, measured s, predicted s) -> per pattern, the geometric mean of measured / predicted (pairs
    with a non-positive time are left out)."""
    logs: dict[str, list[float]] = {}
    for pattern, measured, predicted in pairs:
        if measured > 0 and predicted > 0 and math.isfinite(measured) and math.isfinite(predicted):
            logs.setdefault(pattern, []).append(math.log(measured / predicted))
    return {p: math.exp(sum(v) / len(v)) for p, v in logs.items()}


# ------------------------------------------------------------------------------------------------- chains

@dataclass(frozen=True)
class Elements:
    """A tensor size in floating elements (the part of `trace.records.Size` a chain needs)."""

    elements: int

    def bytes(self, dtype: str) -> int:
        return self.elements * itemsize(dtype)


@dataclass(frozen=True)
class ChainOp:
    """One op of a calibration chain with the fields `units` and `kernel_of_op` read of a traced op, written
    from the chain's shapes (tests/test_fusion.py checks them against the tracer's records of the same module)."""

    module: str
    op: str
    kind: str
    macs: int
    elements: int
    reads: Elements
    writes: Elements
    io: tuple[tuple[int, ...], ...]
    layer: LayerCost | None = None
    window: int = 0  # a pooling op's window (a squeeze-excite's global pool: its whole map)


def _conv_op(module: str, cin: int, cout: int, k: int, s: int, groups: int, bias: bool) -> ChainOp:
    layer = conv(cin, cout, k, s, padding=k // 2, groups=groups, bias=bias, name=module)
    weights = cout * (cin // groups) * k * k + (cout if bias else 0)
    return ChainOp(module, "aten.convolution.default", "conv", layer.macs, cout * s * s,
                   Elements(cin * s * s + weights), Elements(cout * s * s), ((1, cin, s, s), (1, cout, s, s)), layer)


def _unary(module: str, name: str, c: int, s: int, inplace: bool = True) -> ChainOp:
    n = c * s * s
    return ChainOp(module, f"aten.{name}{'_' if inplace else ''}.default", "elementwise", 0, n, Elements(n),
                   Elements(n), ((1, c, s, s), (1, c, s, s)))


#: the aten op each activation module of a chain issues
_ATEN = {"relu": "relu", "relu6": "hardtanh", "hardswish": "hardswish", "silu": "silu"}


def _conv_ops(c: int, s: int, k: int, act: str, groups: int) -> list[ChainOp]:
    """_conv_chain's ops: twice conv (no bias) + batch norm (reads its input and 4 per-channel vectors, writes its
    output and the 2 saved statistics) + the activation, in place."""
    ops: list[ChainOp] = []
    n = c * s * s
    for i in range(2):
        ops += [_conv_op(str(3 * i), c, c, k, s, groups, False),
                ChainOp(str(3 * i + 1), "aten.native_batch_norm.default", "batchnorm", 0, n, Elements(n + 4 * c),
                        Elements(n + 2 * c), ((1, c, s, s), (1, c, s, s))),
                _unary(str(3 * i + 2), _ATEN[act], c, s)]
    return ops


def _se_ops(c: int, s: int, gate: str) -> list[ChainOp]:
    """_se_chain's ops: twice mean -> 1x1 conv -> relu -> 1x1 conv -> gate -> x * gate."""
    r, n = max(8, c // 4), c * s * s
    ops: list[ChainOp] = []
    for i in range(2):
        ops += [ChainOp(f"{i}.pool", "aten.mean.dim", "pooling", 0, c, Elements(n), Elements(c),
                        ((1, c, s, s), (1, c, 1, 1)), window=s * s),
                _conv_op(f"{i}.fc1", c, r, 1, 1, 1, True), _unary(f"{i}.act", "relu", r, 1, inplace=False),
                _conv_op(f"{i}.fc2", r, c, 1, 1, 1, True), _unary(f"{i}.gate", gate, c, 1, inplace=False),
                ChainOp(str(i), "aten.mul.Tensor", "elementwise", 0, n, Elements(n + c), Elements(n),
                        ((1, c, s, s), (1, c, s, s)))]
    return ops


def _residual_ops(c: int, s: int, relu: bool) -> list[ChainOp]:
    """_residual_chain's ops: twice an add of two tensors (and a relu)."""
    n = c * s * s
    ops: list[ChainOp] = []
    for _ in range(2):
        ops.append(ChainOp("", "aten.add.Tensor", "elementwise", 0, n, Elements(2 * n), Elements(n),
                           ((1, c, s, s), (1, c, s, s))))
        if relu:
            ops.append(_unary("", "relu", c, s, inplace=False))
    return ops


@dataclass(frozen=True)
class Chain:
    """A short chain of units of one pattern, timed whole: how to build it (torch.nn -> module), its inputs, and
    its ops as the tracer records them (a shuffle chain: none, its copies are the units' own kernels)."""

    pattern: str
    name: str
    input_shapes: list[tuple[int, ...]]
    build: Callable[[Any], Any]
    ops: list[ChainOp]


def _conv_chain(nn: Any, c: int, k: int, act: str, groups: int) -> Any:
    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU}
    layers = []
    for _ in range(2):
        layers += [nn.Conv2d(c, c, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c),
                   acts[act](inplace=True)]
    return nn.Sequential(*layers).eval()


def _se_chain(nn: Any, c: int, gate: str) -> Any:
    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1, self.act = nn.Conv2d(c, max(8, c // 4), 1), nn.ReLU()
            self.fc2 = nn.Conv2d(max(8, c // 4), c, 1)
            self.gate = nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid()

        def forward(self, x: Any) -> Any:
            return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))

    return nn.Sequential(SE(), SE()).eval()


def _residual_chain(nn: Any, act: bool) -> Any:
    class Residual(nn.Module):
        def forward(self, x: Any, y: Any) -> Any:
            z = x + y
            z = z.relu() if act else z
            z = z + y
            return z.relu() if act else z

    return Residual()


def _shuffle_chain(nn: Any) -> Any:
    import torch

    class Shuffle(nn.Module):
        """ShuffleNet v2's split, concatenation and channel shuffle, twice."""

        def forward(self, x: Any) -> Any:
            for _ in range(2):
                a, b = x.chunk(2, dim=1)
                x = torch.cat((a, b), dim=1)
                n, c, h, w = x.shape
                x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            return x

    return Shuffle()


def chains() -> list[Chain]:
    """The chains a calibration measures: per pattern, four small modules over the maps a CNN meets, each two
    units long (so a unit runs after another, as inside a network). Synthetic: disjoint from any model a
    benchmark checks."""
    out: list[Chain] = []
    for c, s, k, act in [(16, 112, 1, "relu"), (32, 56, 3, "relu6"), (64, 28, 1, "hardswish"), (128, 14, 3, "relu")]:
        out.append(Chain("conv", f"conv k{k} {c}x{s}² {act}", [(1, c, s, s)], partial(_conv_chain, c=c, k=k, act=act,
                                                                                       groups=1),
                         _conv_ops(c, s, k, act, 1)))
    for c, s, k, act in [(32, 112, 3, "relu"), (72, 56, 5, "relu"), (120, 28, 3, "hardswish"),
                         (480, 14, 5, "silu")]:
        out.append(Chain("depthwise", f"dw k{k} {c}x{s}² {act}", [(1, c, s, s)],
                         partial(_conv_chain, c=c, k=k, act=act, groups=c), _conv_ops(c, s, k, act, c)))
    for c, s, gate in [(16, 56, "hardsigmoid"), (72, 28, "sigmoid"), (240, 14, "hardsigmoid"), (576, 7, "sigmoid")]:
        out.append(Chain("se", f"se {c}x{s}² {gate}", [(1, c, s, s)], partial(_se_chain, c=c, gate=gate),
                         _se_ops(c, s, gate)))
    for c, s, relu in [(24, 56, True), (64, 56, False), (128, 28, True), (256, 14, True)]:
        out.append(Chain("residual", f"add {c}x{s}²{' relu' if relu else ''}", [(1, c, s, s)] * 2,
                         partial(_residual_chain, act=relu), _residual_ops(c, s, relu)))
    for c, s in [(48, 28), (116, 28), (96, 14), (464, 7)]:
        out.append(Chain("shuffle", f"shuffle {c}x{s}²", [(1, c, s, s)], _shuffle_chain, []))
    return out


def chain_units(chain: Chain, runtime: str, dtype: str) -> list[Unit]:
    """A chain's units on `runtime` (a shuffle chain: its copies, which the trace does not record)."""
    if chain.pattern == "shuffle":
        elements = math.prod(chain.input_shapes[0])
        copy = Kernel(f"{chain.name}: copy", "copy", elements, 2 * elements * itemsize(dtype))
        return [Unit("shuffle", chain.name, (), (), (copy, copy))] * 2
    return units(chain.ops, runtime, dtype)


def calibrate_units(calibration: Calibration, settings: Settings,
                    progress: Callable[[], Any] | None = None) -> dict[str, float]:
    """Per pattern, measured / predicted over its chains (geometric mean): each chain timed whole on the settings'
    runtime, against the sum of its units' running kernels as the calibration predicts them alone."""
    from torch import nn

    from dscalc.measure.modules import time_module

    pairs = []
    for chain in chains():
        if progress is not None:
            progress()
        try:
            found = chain_units(chain, settings.runtime, settings.dtype)
            kernels = op_kernels(chain.ops, settings.dtype)
            parts = [unit_seconds(u, kernels, lambda k: calibration.predict(k).seconds) for u in found]
        except KeyError:  # a kind the design did not calibrate
            continue
        if not found or any(u.pattern != chain.pattern for u in found) or any(p is None for p in parts):
            continue  # not the units it was built to be (a runtime that traced it otherwise): no evidence
        t = time_module(chain.build(nn), chain.input_shapes, settings, chain.name, own=True)
        if t.median:
            pairs.append((chain.pattern, t.median, sum(p for p in parts if p is not None)))
    return fit_factors(pairs)


def chain_count() -> int:
    """How many measurements `calibrate_units` makes (for a progress bar)."""
    return len(chains())

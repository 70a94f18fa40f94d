"""ONNX shape inference and shape-constant folding, run in a child process with a wall-clock bound.

`onnx.shape_inference.infer_shapes` is C++ that never looks at Python's signals: a malformed node can send it into
an endless loop (issue 23: an Einsum term with two ellipses) that neither a timeout in Python nor Ctrl-C can
stop. So `infer` runs the whole loop - inference, then folding the shape arithmetic it leaves, up to `FOLD_ROUNDS`
times - in a child process that the parent kills when `$DSCALC_ONNX_INFER_TIMEOUT` seconds (default 60) have
passed, or on Ctrl-C. The child ignores SIGINT (the parent decides) and arms its own alarm, so it ends even if the
parent is killed outright.

On Linux the child is forked: it inherits the imported `onnx` and costs a few milliseconds, where a fresh
interpreter re-imports onnx (most of a second; benchmarks/bench_onnx_guard.py measures both). The child runs only
onnx's C++ and numpy on the few folded constants, no thread pool, no I/O. Elsewhere (macOS, where fork is unsafe
with the system frameworks, and Windows) it is spawned.

Folding is bounded before it evaluates anything: `fold_size` computes the element count of a node's output from
its inputs' shapes and values (Range from start, limit and delta; ConstantOfShape, Expand and Tile from the shape
they are given; broadcasting, Gather and Concat from their operands), and a node whose output would exceed
`FOLD_LIMIT` elements, or whose size cannot be told in advance, is left alone - it is data, not shape arithmetic.
"""

from __future__ import annotations

import math
import signal
import sys
from typing import Any

from onnx import TensorProto

from dscalc.cost.parse import env_seconds
from dscalc.errors import BadInput, RuntimeFailure, first_line

Shape = tuple[int | None, ...]

#: seconds ONNX shape inference and folding may take before the run is stopped (bad input: the model)
TIMEOUT_ENV = "DSCALC_ONNX_INFER_TIMEOUT"
TIMEOUT_S = 60.0
#: "fork" where it is safe and cheap, else "spawn" (a fresh interpreter)
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"

FLOATS = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16,
                    *(getattr(TensorProto, n) for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
                                                        "FLOAT8E5M2FNUZ", "FLOAT4E2M1", "FLOAT8E8M0")
                      if hasattr(TensorProto, n))})

FOLD_ROUNDS = 8
FOLD_LIMIT = 1 << 16  # elements: shape arithmetic is small; anything larger is data, left alone

#: shape arithmetic that dscalc evaluates itself where ONNX's data propagation stops (torch's chunk exports a
#: Div of a Shape, which ONNX does not propagate; the Slice after it then has no shape)
SHAPE_MATH = frozenset({"Shape", "Size", "Gather", "Div", "Mul", "Add", "Sub", "Concat", "Slice", "Unsqueeze",
                        "Squeeze", "Cast", "Constant", "ConstantOfShape", "Range", "Equal", "Where", "Floor",
                        "Ceil", "Reshape", "ReduceProd", "Max", "Min", "Neg", "Mod", "Expand", "Identity", "Abs",
                        "Tile"})
_SAME_SIZE = frozenset({"Cast", "Floor", "Ceil", "Neg", "Abs", "Identity", "Unsqueeze", "Squeeze", "Reshape"})
_AT_MOST_INPUT = frozenset({"Slice", "ReduceProd"})
_BROADCAST = frozenset({"Div", "Mul", "Add", "Sub", "Equal", "Where", "Max", "Min", "Mod"})


def dims(value_info: Any) -> Shape | None:
    """The dimensions of a ValueInfoProto (None for one with no name or value), None when it has no shape."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)


def full(shape: Shape | None) -> tuple[int, ...] | None:
    """A shape whose every dimension is known, else None."""
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(int(d) for d in shape if d is not None)


def attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded, undecodable bytes replaced)."""
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode(errors="replace") if isinstance(v, bytes) else v
    return out


# ------------------------------------------------------------------------------------------------ folding

def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """numpy's broadcast of the shapes, None where they do not broadcast."""
    width = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(width):
        sizes = {s[axis - width + len(s)] for s in shapes if axis - width + len(s) >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _ints(value: Any) -> list[int] | None:
    """A 0-D or 1-D integer array as Python ints, else None."""
    import numpy as np

    if not isinstance(value, np.ndarray) or value.ndim > 1 or value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value.reshape(-1)]


def _scalar(value: Any) -> float | int | None:
    import numpy as np

    if not isinstance(value, np.ndarray) or value.size != 1 or value.dtype.kind not in "iuf":
        return None
    v = value.reshape(-1)[0]
    return int(v) if value.dtype.kind in "iu" else float(v)


def _constant_size(node: Any) -> int | None:
    """Elements of a Constant node's value, from its attribute alone (None for a sparse or external value)."""
    for a in node.attribute:
        if a.name == "value":
            if a.t.data_location == TensorProto.EXTERNAL:  # never read from wherever it points
                return None
            return math.prod(a.t.dims)
        if a.name in ("value_int", "value_float", "value_string"):
            return 1
        if a.name == "value_ints":
            return len(a.ints)
        if a.name == "value_floats":
            return len(a.floats)
        if a.name == "value_strings":
            return len(a.strings)
    return None  # sparse_value (dense would be its full dims), or no value


def fold_size(node: Any, inputs: list[Any]) -> int | None:
    """The element count of `node`'s output, computed from its inputs' shapes and values without evaluating it;
    None when it cannot be told (the node is then not folded). `inputs` are numpy arrays (None for an empty
    optional input)."""
    op = node.op_type
    given = [i for i in inputs if i is not None]
    if op == "Constant":
        return _constant_size(node)
    if op == "Size":
        return 1
    if not given:
        return None
    first = inputs[0]
    if op in _SAME_SIZE or op in _AT_MOST_INPUT:
        return None if first is None else int(first.size)
    if op in _BROADCAST:
        shape = _broadcast(*(tuple(int(d) for d in i.shape) for i in given))
        return None if shape is None else math.prod(shape)
    if op == "Concat":
        return sum(int(i.size) for i in given)
    if op == "Gather" and len(inputs) == 2 and first is not None and inputs[1] is not None:
        axis = int(attrs(node).get("axis", 0))
        if not -first.ndim <= axis < first.ndim:
            return None
        data = tuple(int(d) for d in first.shape)
        return math.prod(data[:axis % first.ndim]) * int(inputs[1].size) * math.prod(data[axis % first.ndim + 1:])
    if op == "ConstantOfShape":
        wanted = _ints(first)
        return None if wanted is None or any(d < 0 for d in wanted) else math.prod(wanted)
    if op == "Expand" and len(inputs) == 2:
        wanted = _ints(inputs[1])
        if first is None or wanted is None or any(d < 0 for d in wanted):
            return None
        out = _broadcast(tuple(int(d) for d in first.shape), tuple(wanted))
        return None if out is None else math.prod(out)
    if op == "Tile" and len(inputs) == 2:
        repeats = _ints(inputs[1])
        if first is None or repeats is None or len(repeats) != first.ndim or any(r < 0 for r in repeats):
            return None
        return math.prod(int(d) * r for d, r in zip(first.shape, repeats))
    if op == "Range" and len(inputs) == 3:
        start, limit, delta = (_scalar(i) for i in inputs)
        if start is None or limit is None or delta is None or delta == 0:
            return None
        if isinstance(start, int) and isinstance(limit, int) and isinstance(delta, int):
            return max(-((start - limit) // delta), 0)  # ceil((limit - start) / delta), exactly
        span = (limit - start) / delta
        return max(math.ceil(span), 0) if math.isfinite(span) else None
    return None


def fold(m: Any) -> bool:
    """Replace each shape-arithmetic node whose inputs are known (constants, or the Shape of a tensor whose shape
    is inferred) and whose output is at most FOLD_LIMIT elements (checked before it is evaluated) by the constant
    it computes. True when something was folded (the shapes are then inferred again)."""
    import numpy as np  # (onnx's own dependency)
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = m.graph
    values: dict[str, Any] = {}
    for i in g.initializer:
        if math.prod(i.dims) <= FOLD_LIMIT and i.data_type not in FLOATS and \
                i.data_location != TensorProto.EXTERNAL:
            try:
                values[i.name] = numpy_helper.to_array(i)
            except Exception:  # (checked at load; a type numpy cannot hold is simply not folded)
                continue
    shapes = {v.name: dims(v) for v in (*g.input, *g.value_info, *g.output)}
    keep, folded = [], []
    for node in g.node:
        value = None
        if node.op_type == "Shape" and node.input:
            known = full(shapes.get(node.input[0]))
            if known is not None:
                try:
                    a = attrs(node)
                    value = np.array(known[a.get("start", 0):a.get("end", len(known))], dtype=np.int64)
                except Exception:
                    value = None
        elif node.op_type in SHAPE_MATH and node.domain in ("", "ai.onnx") and len(node.output) == 1 and \
                all(not i or i in values for i in node.input):
            inputs = [values[str(name)] if name else None for name in node.input]
            try:
                size = fold_size(node, inputs)
                if size is not None and 0 <= size <= FOLD_LIMIT:
                    feeds = {str(name): values[str(name)] for name in node.input if name}
                    outputs: Any = ReferenceEvaluator(node).run(None, feeds)
                    value = outputs[0]
            except Exception:
                value = None
        if value is not None and getattr(value, "size", FOLD_LIMIT + 1) <= FOLD_LIMIT:
            values[node.output[0]] = value
            folded.append(numpy_helper.from_array(value, node.output[0]))
        else:
            keep.append(node)
    if not folded:
        return False
    used = {i for node in keep for i in node.input} | {o.name for o in g.output}
    folded = [t for t in folded if t.name in used]
    changed = len(keep) < len(g.node)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(folded)
    return changed


# ---------------------------------------------------------------------------------------- the child's work

class _Fails(Exception):
    """ONNX's shape inference raised: the --input shapes do not fit the model."""


def infer_and_fold(payload: bytes) -> bytes:
    """The serialized model, shape-inferred and folded until nothing more folds (at most FOLD_ROUNDS times)."""
    import onnx
    import onnx.shape_inference

    m = onnx.ModelProto()
    m.ParseFromString(payload)
    for _ in range(FOLD_ROUNDS):
        try:
            m = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
        except Exception as e:
            raise _Fails(first_line(e)) from None
        if not fold(m):
            break
    return bytes(m.SerializeToString())


def _child(conn: Any, payload: bytes, limit_s: float) -> None:
    """Runs in the child: the parent decides about Ctrl-C; the alarm ends the child if the parent cannot."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "alarm"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(min(int(limit_s) + 5, 2**31 - 1))
    try:
        reply = b"O" + infer_and_fold(payload)
    except _Fails as e:
        reply = b"B" + str(e).encode(errors="replace")
    except BaseException as e:  # noqa: BLE001 - reported to the parent, never printed here
        reply = b"E" + f"{type(e).__name__}: {first_line(e)}".encode(errors="replace")
    try:
        conn.send_bytes(reply)
    finally:
        conn.close()


def timeout_s() -> float:
    """The bound on shape inference: $DSCALC_ONNX_INFER_TIMEOUT seconds, else TIMEOUT_S."""
    limit = env_seconds(TIMEOUT_ENV)
    return TIMEOUT_S if limit is None else limit


def bounded(target: Any, args: tuple[Any, ...], limit_s: float, method: str | None = None) -> bytes:
    """What `target(conn, *args)` sends on `conn` from a child process, waited for at most `limit_s` seconds;
    the child is killed on timeout, on Ctrl-C (KeyboardInterrupt here) and on any other way out."""
    import multiprocessing
    import warnings

    ctx: Any = multiprocessing.get_context(method or START_METHOD)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=target, args=(send, *args), daemon=True, name="dscalc-onnx-infer")
    try:
        with warnings.catch_warnings():  # (3.12+ warns that forking a process with threads may deadlock;
            warnings.simplefilter("ignore", DeprecationWarning)  # the child touches none of their locks)
            child.start()
        send.close()
        if not receive.poll(limit_s):
            raise TimeoutError
        return bytes(receive.recv_bytes())
    except EOFError:  # the child ended without a word: killed, or crashed inside onnx
        child.join(1)
        code = child.exitcode
        how = f"status {code}"
        if code is not None and code < 0:
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
        raise BadInput(f"ONNX shape inference crashed on this model (its process ended with {how})",
                       "model") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()


def infer(model: Any) -> Any:
    """`model` shape-inferred and its shape arithmetic folded, in a child process bounded in time."""
    import onnx

    limit = timeout_s()
    try:
        reply = bounded(_child, (model.SerializeToString(), limit), limit)
    except TimeoutError:
        raise BadInput(f"ONNX shape inference did not finish within {limit:g} s (a malformed node can make it "
                       f"loop forever; {TIMEOUT_ENV} sets the limit)", "model") from None
    tag, body = reply[:1], reply[1:]
    if tag == b"B":
        raise BadInput(f"ONNX shape inference fails with these shapes: {body.decode(errors='replace')}", "input")
    if tag != b"O":
        raise RuntimeFailure(f"ONNX shape inference failed: {body.decode(errors='replace')}")
    out = onnx.ModelProto()
    out.ParseFromString(body)
    return out

"""What an ONNX file holds, checked before anything evaluates it (issue 23): every tensor's dimensions and data
length, every external-data location, every Einsum equation. A file that breaks a rule is bad input, one line
naming the node and tensor.

Counting needs no weight data: MACs follow from the dimensions, parameters are element counts. So `check` leaves
on disk the data of every tensor larger than the shape arithmetic dscalc folds (`onnx_infer.FOLD_LIMIT` elements)
and drops it from memory where the file embedded it; only small tensors (shape constants) keep or read their
data. External data is resolved against the model's folder - never the current directory - and refused, before
anything is read, when its location is absolute, leads out of the folder (`..`, a symbolic link), is no regular
file (a FIFO, a device, a folder) or is shorter than the tensor needs.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from typing import Any

from onnx import TensorProto

from dscalc.errors import BadInput
from dscalc.trace.onnx_infer import FLOATS, FOLD_LIMIT

#: bits per element of the types packed below a byte
_PACKED = {getattr(TensorProto, n): b for n, b in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2),
                                                     ("UINT2", 2)) if hasattr(TensorProto, n)}
_COMPLEX = frozenset({TensorProto.COMPLEX64, TensorProto.COMPLEX128})
#: the typed field that holds each type's values when it has no raw_data
_FIELD = {TensorProto.FLOAT: "float_data", TensorProto.COMPLEX64: "float_data", TensorProto.DOUBLE: "double_data",
          TensorProto.COMPLEX128: "double_data", TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data",
          TensorProto.UINT64: "uint64_data", TensorProto.STRING: "string_data"}
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data",
                "external_data")


def node_label(node: Any, index: int | None = None) -> str:
    """How a message names a node: node 'conv1' (Conv), or node #3 (Conv) for one with no name."""
    name = f"'{node.name}'" if node.name else (f"#{index}" if index is not None else "(unnamed)")
    return f"node {name} ({node.op_type})"


# ----------------------------------------------------------------------------------------------- walking

def _subgraphs(node: Any) -> Iterator[Any]:
    for a in node.attribute:
        if a.HasField("g"):
            yield a.g
        yield from a.graphs


def _nodes(graph: Any) -> Iterator[tuple[Any, int]]:
    """Every node of a graph and of the graphs inside its nodes (If, Loop, Scan bodies), with its index."""
    for index, node in enumerate(graph.node):
        yield node, index
        for sub in _subgraphs(node):
            yield from _nodes(sub)


def _all_nodes(model: Any) -> Iterator[tuple[Any, int]]:
    yield from _nodes(model.graph)
    for function in model.functions:
        for index, node in enumerate(function.node):
            yield node, index
            for sub in _subgraphs(node):
                yield from _nodes(sub)


def _attribute_tensors(node: Any) -> Iterator[tuple[str, Any]]:
    for a in node.attribute:
        if a.HasField("t"):
            yield a.name, a.t
        for t in a.tensors:
            yield a.name, t
        sparse = [a.sparse_tensor] if a.HasField("sparse_tensor") else []
        for s in [*sparse, *a.sparse_tensors]:
            yield a.name, s.values
            yield a.name, s.indices


def _graph_tensors(graph: Any) -> Iterator[tuple[str, Any, bool]]:
    """(where, tensor, is an initializer) for every tensor a graph stores: its initializers, named after the
    first node that uses them, and the tensors in its nodes' attributes."""
    users: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            users.setdefault(name, node_label(node, index))
    for t in graph.initializer:
        yield (f"{users[t.name]}: " if t.name in users else "") + f"initializer '{t.name}'", t, True
    for s in graph.sparse_initializer:
        for t in (s.values, s.indices):
            yield f"sparse initializer '{s.values.name}'", t, True
    for index, node in enumerate(graph.node):
        for attribute, t in _attribute_tensors(node):
            yield f"{node_label(node, index)}: attribute '{attribute}'", t, False
        for sub in _subgraphs(node):
            yield from _graph_tensors(sub)


def _all_tensors(model: Any) -> Iterator[tuple[str, Any, bool]]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for index, node in enumerate(function.node):
            for attribute, t in _attribute_tensors(node):
                yield f"function '{function.name}': {node_label(node, index)}: attribute '{attribute}'", t, False
            for sub in _subgraphs(node):
                yield from _graph_tensors(sub)


# ----------------------------------------------------------------------------------------------- tensors

def data_bytes(t: Any) -> int | None:
    """The bytes a tensor's dims need as raw data; None for a type whose size dscalc does not know."""
    n = math.prod(t.dims)
    if t.data_type in _PACKED:
        return -(-n * _PACKED[t.data_type] // 8)
    if t.data_type in (TensorProto.UNDEFINED, TensorProto.STRING):
        return None
    try:
        from onnx import helper

        return n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except Exception:  # a type this onnx does not know
        return None


def _check_inline(t: Any, where: str) -> None:
    """The data stored in the file matches the dims."""
    n = math.prod(t.dims)
    shown = "x".join(map(str, t.dims)) or "a scalar"
    if t.HasField("raw_data"):
        need = data_bytes(t)
        if need is not None and len(t.raw_data) != need:
            raise BadInput(f"{where} holds {len(t.raw_data)} bytes of data; its dims ({shown}, "
                           f"{TensorProto.DataType.Name(t.data_type)}) need {need}", "model")
        return
    field = _FIELD.get(t.data_type, "int32_data") if t.data_type != TensorProto.UNDEFINED else None
    if field is None:
        return
    count = len(getattr(t, field))
    need_values = n * (2 if t.data_type in _COMPLEX else 1)
    if t.data_type in _PACKED:
        need_values = -(-n * _PACKED[t.data_type] // 8)
    if count != need_values:
        raise BadInput(f"{where} holds {count} values; its dims ({shown}) need {need_values}", "model")


def _external(t: Any, where: str, folder: str) -> tuple[str, int, int]:
    """(file, offset, length) of a tensor's external data, each checked: a relative location inside `folder`,
    a regular file, long enough. Nothing is read."""
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    said = f"{where}: external data {location!r}"
    if not location:
        raise BadInput(f"{where}: external data with no location", "model")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location):
        raise BadInput(f"{said} is an absolute path; external data must lie in the model's folder ({folder})",
                       "model")
    try:
        target = os.path.realpath(os.path.join(folder, location))
        inside = os.path.commonpath([folder, target]) == folder and target != folder
    except ValueError:  # a NUL in the name; another drive (Windows)
        inside = False
    if not inside:
        raise BadInput(f"{said} leads outside the model's folder ({folder})", "model")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        raise BadInput(f"{said}: no such file in {folder}", "model") from None
    except (OSError, ValueError) as e:
        raise BadInput(f"{said}: cannot read it ({getattr(e, 'strerror', None) or e})", "model") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{said} is not a regular file", "model")
    numbers = {}
    for key in ("offset", "length"):
        if key in info:
            text = info[key]
            if not (text.isascii() and text.isdigit() and len(text) <= 20):
                raise BadInput(f"{said}: {key} {text[:40]!r} is not a whole number of bytes", "model")
            numbers[key] = int(text)
    offset = numbers.get("offset", 0)
    need = data_bytes(t)
    length = numbers.get("length", need if need is not None else st.st_size - offset)
    if need is not None and length != need:
        raise BadInput(f"{said}: length {length} bytes; its dims need {need}", "model")
    if offset + length > st.st_size:
        raise BadInput(f"{said}: {length} bytes at offset {offset} run past the end of the file "
                       f"({st.st_size} bytes)", "model")
    return target, offset, length


def _read(t: Any, where: str, place: tuple[str, int, int]) -> None:
    """Bring a small tensor's external data into the proto (the file checked just before, and again as opened)."""
    target, offset, length = place
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(target, flags)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BadInput(f"{where}: external data {target!r} is not a regular file", "model")
            f.seek(offset)
            data = f.read(length)
    except OSError as e:
        raise BadInput(f"{where}: cannot read its external data {target!r} ({e.strerror})", "model") from None
    if len(data) != length:
        raise BadInput(f"{where}: external data {target!r} ends before its {length} bytes", "model")
    t.ClearField("external_data")
    t.data_location = TensorProto.DEFAULT
    t.raw_data = data


def _strip(t: Any) -> None:
    """Keep a tensor's type and dims, drop its data (never needed to count)."""
    for name in _DATA_FIELDS:
        t.ClearField(name)
    t.data_location = TensorProto.DEFAULT


def check(model: Any, path: str) -> None:
    """Check every tensor and Einsum of `model` (loaded from `path` without its external data), then drop the
    data that counting never needs - floating-point initializers (weights) and every tensor too large to be
    shape arithmetic - and read the external data of the rest (small integer constants, small Constant values)."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for where, t, initializer in _all_tensors(model):
        if any(d < 0 for d in t.dims):
            raise BadInput(f"{where} has a negative dimension ({'x'.join(map(str, t.dims))})", "model")
        small = math.prod(t.dims) <= FOLD_LIMIT and not (initializer and t.data_type in FLOATS)
        if t.data_location == TensorProto.EXTERNAL:
            place = _external(t, where, folder)
            if small and data_bytes(t) is not None:  # (a string tensor's length is not known: never read)
                _read(t, where, place)
            else:
                _strip(t)
        else:
            _check_inline(t, where)
            if not small:
                _strip(t)
    for node, index in _all_nodes(model):
        if node.op_type == "Einsum":
            problem = einsum_problem(node)
            if problem:
                raise BadInput(f"{node_label(node, index)}: {problem}", "model")


# ------------------------------------------------------------------------------------------------ einsum

_TERM = re.compile(r"(?:[A-Za-z]|\.\.\.)*")


def einsum_problem(node: Any) -> str | None:
    """What is wrong with an Einsum node's equation (ONNX: comma-separated terms of letters, each term with at
    most one '...', an optional '->' output of letters the inputs name, each once), None when it is well formed.
    ONNX's own shape inference loops forever on some malformed ones, so they are refused before it runs."""
    equation = ""
    for a in node.attribute:
        if a.name == "equation":
            equation = a.s.decode(errors="replace")
    eq = equation.replace(" ", "")
    shown = repr(equation[:80])
    if not eq:
        return "no equation"
    lhs, arrow, rhs = eq.partition("->")
    if "->" in rhs:
        return f"equation {shown} has more than one '->'"
    terms = lhs.split(",")
    for term in [*terms, *([rhs] if arrow else [])]:
        if term.count("...") > 1:
            return f"equation {shown}: the term {term[:40]!r} has more than one ellipsis ('...')"
        if not _TERM.fullmatch(term):
            return f"equation {shown}: the term {term[:40]!r} holds something other than letters and one '...'"
    inputs = len([i for i in node.input])
    if len(terms) != inputs:
        return f"equation {shown} has {len(terms)} input term{'s' if len(terms) != 1 else ''} for {inputs} inputs"
    if arrow:
        named = set("".join(terms).replace("...", ""))
        letters = rhs.replace("...", "")
        if len(set(letters)) != len(letters):
            return f"equation {shown}: the output names an index more than once"
        missing = sorted(set(letters) - named)
        if missing:
            return f"equation {shown}: the output index {missing[0]!r} is in no input"
        if "..." in rhs and not any("..." in t for t in terms):
            return f"equation {shown}: the output has '...' but no input does"
    return None

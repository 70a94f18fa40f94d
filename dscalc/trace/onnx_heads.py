"""`compare MODEL.onnx --as pointwise-head | gap-head`: an ONNX graph's Flatten -> Gemm/MatMul head rewritten, and
both graphs counted by the ONNX profiler (`trace.onnx`). The profiler counts from dimensions, never from weight
values: every new weight is an initializer with its dims and no data, like the file's own weights once
`onnx_file.check` has dropped theirs.

A head is a Flatten (or a Reshape) of an (N, C, H, W) map with H x W > 1 into (N, C·H·W), then Gemm nodes (or a
MatMul by a weight, with an Add of its bias) each fed the previous one's width, with only shape-keeping ops between
(activations, Dropout), each tensor used once. It becomes

- ``pointwise-head``: the Flatten an Identity (the map passes through), every Gemm/MatMul a 1x1 Conv of its width
  (the Add's bias in the Conv), then GlobalAveragePool and Flatten after the last one;
- ``gap-head``: GlobalAveragePool before the Flatten, and the first Gemm/MatMul fed C features (its weight C x N).

A MatMul by a weight on a tensor of rank > 2 already works per position: named, left alone."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper

from dscalc.cost import heads
from dscalc.trace import onnx as O
from dscalc.trace.onnx_infer import full
from dscalc.trace.records import ProfileResult

#: ops that may sit between the linear layers of a head (one data input, the shape kept)
_BETWEEN = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "Dropout", "Identity", "Gelu", "Elu",
                      "Selu", "HardSigmoid", "HardSwish", "Softplus", "BatchNormalization"})  # (BN: channels on axis 1)


@dataclass
class _Stack:
    flatten: Any  # the Flatten/Reshape node
    map: tuple[int, int, int, int]  # (N, C, H, W)
    linears: list[tuple[Any, Any]]  # (Gemm or MatMul node, its bias Add node or None)
    rows: list[str]  # how the profile names each linear


def _consumers(graph: Any) -> dict[str, list[Any]]:
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _only_user(users: dict[str, list[Any]], outputs: set[str], name: str) -> Any:
    found = users.get(name, [])
    return found[0] if len(found) == 1 and name not in outputs else None


def find(model: Any) -> tuple[list[_Stack], list[str], list[str]]:
    """(the head stacks, the linear rows already applied per position, those after a 1x1 map) of a shape-inferred
    model."""
    g = O.Graph(model)
    graph = model.graph
    users = _consumers(graph)
    outputs = {o.name for o in graph.output}
    rows = {id(node): O._module(node, i)[0] for i, node in enumerate(graph.node)}
    stacks: list[_Stack] = []
    per_pixel: list[str] = []
    pooled: list[str] = []

    def shape(name: str) -> tuple[int, ...] | None:
        return full(g.shapes.get(name))

    for node in graph.node:
        if node.op_type == "MatMul" and g.is_weight(node, 1):
            x = shape(node.input[0])
            if x is not None and len(x) > 2:
                per_pixel.append(rows[id(node)])
            continue
        if node.op_type not in ("Flatten", "Reshape") or not node.input:
            continue
        x, y = shape(node.input[0]), shape(node.output[0])
        if x is None or y is None or len(x) != 4 or len(y) != 2 or y != (x[0], math.prod(x[1:])):
            continue
        linears: list[tuple[Any, Any]] = []
        t, width = node.output[0], y[1]
        while True:
            n = _only_user(users, outputs, t)
            if n is None or n.input[0] != t:
                break
            if n.op_type == "Gemm" and g.is_weight(n, 1):
                a = O._attrs(n)
                w = tuple(g.initializers[g.root(n.input[1])].dims)
                if a.get("transA", 0) or len(w) != 2 or (w[1] if a.get("transB", 0) else w[0]) != width:
                    break
                linears.append((n, None))
                t, width = n.output[0], int(w[0] if a.get("transB", 0) else w[1])
            elif n.op_type == "MatMul" and g.is_weight(n, 1):
                w = tuple(g.initializers[g.root(n.input[1])].dims)
                if len(w) != 2 or w[0] != width:
                    break
                add = _only_user(users, outputs, n.output[0])
                bias = None
                if add is not None and add.op_type == "Add" and len(add.input) == 2:
                    other = add.input[1] if add.input[0] == n.output[0] else add.input[0]
                    init = g.initializers.get(g.root(other))
                    if init is not None and math.prod(init.dims) == w[1]:
                        bias = add
                linears.append((n, bias))
                t, width = (bias or n).output[0], int(w[1])
            elif n.op_type in _BETWEEN and linears and _next_linear(users, outputs, n):
                t = n.output[0]
            else:
                break
        if not linears:
            continue
        names = [rows[id(n)] for n, _ in linears]
        if x[2] * x[3] == 1:
            pooled += names[:1]
        else:
            stacks.append(_Stack(node, (x[0], x[1], x[2], x[3]), linears, names))
    return stacks, per_pixel, pooled


def _next_linear(users: dict[str, list[Any]], outputs: set[str], node: Any) -> bool:
    """Whether a linear layer follows `node` after only shape-keeping ops (a between op is kept only inside a
    stack: after its last linear the map is already pooled)."""
    while True:
        n = _only_user(users, outputs, node.output[0])
        if n is None:
            return False
        if n.op_type in ("Gemm", "MatMul"):
            return True
        if n.op_type not in _BETWEEN:
            return False
        node = n


def rewrite(model: Any, stacks: list[_Stack], as_: str) -> tuple[Any, set[str]]:
    """A copy of `model` with every stack rewritten, and the names of the initializers it added."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    by_name = {id(n): i for i, n in enumerate(model.graph.node)}
    inits = {i.name: i for i in graph.initializer}
    added: dict[str, Any] = {}
    dropped: set[str] = set()
    inserts: list[tuple[int, list[Any]]] = []  # (insert after this node index, nodes)

    def weight(name: str, like: str, dims: list[int]) -> str:
        new = f"{name}__{as_}"
        added[new] = onnx.TensorProto(name=new, data_type=inits[like].data_type, dims=dims)
        return new

    for stack in stacks:
        c = stack.map[1]
        flat = graph.node[by_name[id(stack.flatten)]]
        if as_ == "gap-head":
            pooled = f"{flat.output[0]}__gap"
            gap = helper.make_node("GlobalAveragePool", [flat.input[0]], [pooled], name=f"{flat.name or 'flatten'}_gap")
            inserts.append((by_name[id(stack.flatten)] - 1, [gap]))
            _as_flatten(flat, pooled)
            first, _ = stack.linears[0]
            node = graph.node[by_name[id(first)]]
            w = inits[_root(m, node.input[1])]
            trans = node.op_type == "Gemm" and O._attrs(node).get("transB", 0)
            width = int(w.dims[0] if trans else w.dims[1])
            dims = [width, c] if trans else [c, width]
            dropped.add(w.name)
            node.input[1] = weight(w.name, w.name, dims)
            continue
        flat.op_type = "Identity"
        del flat.input[1:]
        del flat.attribute[:]
        cin = c
        for k, (lin, add) in enumerate(stack.linears):
            node = graph.node[by_name[id(lin)]]
            w = inits[_root(m, node.input[1])]
            trans = node.op_type == "Gemm" and O._attrs(node).get("transB", 0)
            width = int(w.dims[0] if trans else w.dims[1])
            dropped.add(w.name)
            conv_w = weight(w.name, w.name, [width, cin, 1, 1])
            bias = ""
            if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
                b = inits.get(_root(m, node.input[2]))
                if b is not None and math.prod(b.dims) == width:
                    dropped.add(b.name)
                    bias = weight(b.name, b.name, [width])
            if add is not None:
                a = graph.node[by_name[id(add)]]
                other = a.input[1] if a.input[0] == node.output[0] else a.input[0]
                dropped.add(_root(m, other))
                bias = weight(_root(m, other), _root(m, other), [width])
                a.op_type = "Identity"
                a.input[:] = [node.output[0]]
            out = (graph.node[by_name[id(add)]] if add is not None else node).output[0]
            node.op_type = "Conv"
            node.domain = ""
            node.input[:] = [node.input[0], conv_w, *([bias] if bias else [])]
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("kernel_shape", [1, 1]))
            cin = width
            if k == len(stack.linears) - 1:  # the map pooled, then flattened back to the graph's (N, width)
                last = graph.node[by_name[id(add if add is not None else lin)]]
                spatial, pooled = f"{out}__map", f"{out}__pooled"
                last.output[0] = spatial
                inserts.append((by_name[id(add if add is not None else lin)], [
                    helper.make_node("GlobalAveragePool", [spatial], [pooled], name=f"{node.name or 'head'}_gap"),
                    helper.make_node("Flatten", [pooled], [out], axis=1, name=f"{node.name or 'head'}_flatten")]))
    for after, nodes in sorted(inserts, key=lambda x: -x[0]):
        for j, node in enumerate(nodes):
            graph.node.insert(after + 1 + j, node)
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.initializer if not (i.name in dropped and i.name not in used)]
    del graph.initializer[:]
    graph.initializer.extend([*keep, *added.values()])
    inputs = [v for v in graph.input if not (v.name in dropped and v.name not in used)]
    del graph.input[:]
    graph.input.extend(inputs)
    return m, set(added)


def _root(model: Any, name: str) -> str:
    """An initializer's name through the Identity nodes that pass it on."""
    producers = {n.output[0]: n for n in model.graph.node if n.op_type == "Identity" and n.output}
    seen = 0
    while name in producers and seen < 100:
        name, seen = producers[name].input[0], seen + 1
    return name


def _as_flatten(node: Any, source: str) -> None:
    node.op_type = "Flatten"
    node.input[:] = [source]
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("axis", 1))


def compare(source: Any, shapes: list[tuple[int, ...]], as_: str) -> tuple[ProfileResult, ProfileResult,
                                                                          tuple[str, ...], int]:
    """The original's and the rewritten graph's profiles, the lines naming what changed, and how many linear layers
    were replaced. Bad input (one line) when the graph has no Flatten -> Gemm/MatMul head."""
    loaded = source.load()
    stored = {i.name for i in loaded.proto.graph.initializer}
    inferred = O._static(loaded.proto, shapes)
    original = O.profile_proto(inferred, stored, shapes, None, static=True)
    stacks, per_pixel, pooled = find(inferred)
    if not stacks:
        raise heads.no_model_head("Gemm/MatMul", tuple(pooled), tuple(per_pixel))
    rewritten, added = rewrite(inferred, stacks, as_)
    variant = O.profile_proto(rewritten, stored | added, shapes, None)
    lines, replaced = heads.model_lines(as_, [(tuple(s.rows), s.map[1:]) for s in stacks], tuple(per_pixel))
    return original, variant, lines, replaced

"""TorchScript modules, interpreted: the module's inlined forward graph runs node by node in Python, each aten op
called through `torch.ops` and named after the module hierarchy TorchScript records for it
(`node.getModuleHierarchy()`: `layer1(Sequential).0(BasicBlock).conv1(Conv2d)` -> `layer1.0.conv1`). So a `.pt`
file gets the same per-module rows as the source it was scripted from, on meta tensors (no weights touched, any
size), and the module itself is never run or written to: `prim::SetAttr` (a BatchNorm's step counter) lands in an
overlay, in-place ops (running statistics) on meta copies.

A graph node this interpreter does not know (a Python callback, a call it cannot inline) raises `Unsupported`; the
tracer then runs a copy of the module as TorchScript runs it, with every MAC on the `(model)` row, and says why.
"""

from __future__ import annotations

import copy
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


class Unsupported(Exception):  # noqa: N818 - a signal to run the module natively instead
    pass


#: TorchScript's ScalarType numbers (prim::dtype returns them; ops take them)
_DTYPE_CODES = {torch.uint8: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.int64: 4, torch.float16: 5,
                torch.float32: 6, torch.float64: 7, torch.complex32: 8, torch.complex64: 9, torch.complex128: 10,
                torch.bool: 11, torch.qint8: 12, torch.quint8: 13, torch.qint32: 14, torch.bfloat16: 15}

_HIERARCHY = re.compile(r"([^.()]+)\(([^()]*)\)")


def hierarchy(text: str) -> tuple[str, dict[str, str]]:
    """'blocks(Sequential).0(Blk).c(Conv2d).SELF(Conv2d)' -> ('blocks.0.c', {'blocks': 'Sequential', ...})."""
    path: list[str] = []
    types: dict[str, str] = {}
    for instance, kind in _HIERARCHY.findall(text):
        if instance in ("SELF", "UNKNOWN_INSTANCE") or instance.startswith("__"):
            continue
        path.append(instance)
        types[".".join(path)] = kind.rsplit(".", 1)[-1]
    return ".".join(path), types


@dataclass
class _Node:
    kind: str
    inputs: list[int]
    outputs: list[int]
    path: str
    attrs: dict[str, Any] = field(default_factory=dict)
    blocks: list[_Block] = field(default_factory=list)
    op: Any = None
    kwarg_names: list[str | None] = field(default_factory=list)  # per input: None (positional) or its name


@dataclass
class _Block:
    inputs: list[int]
    outputs: list[int]
    nodes: list[_Node]


def _compile_block(block: Any, types: dict[str, str]) -> _Block:
    nodes = [_compile_node(n, types) for n in block.nodes()]
    return _Block([v.unique() for v in block.inputs()], [v.unique() for v in block.outputs()], nodes)


def _compile_node(n: Any, types: dict[str, str]) -> _Node:
    kind = n.kind()
    path, found = hierarchy(n.getModuleHierarchy())
    types.update(found)
    node = _Node(kind, [v.unique() for v in n.inputs()], [v.unique() for v in n.outputs()], path)
    if kind == "prim::Constant":
        node.attrs["value"] = n.output().toIValue()
    elif kind in ("prim::GetAttr", "prim::SetAttr"):
        node.attrs["name"] = n.s("name")
    node.blocks = [_compile_block(b, types) for b in n.blocks()]
    if kind.startswith("aten::") or kind.startswith("quantized::") or kind.startswith("torchvision::"):
        namespace, name = kind.split("::")
        schema = n.schema()
        if schema == "(no schema)":
            node.op = None
        else:
            parsed = torch._C.parse_schema(schema)
            packet = getattr(getattr(torch.ops, namespace), name, None)
            node.op = getattr(packet, parsed.overload_name or "default", None) if packet is not None else None
            node.kwarg_names = [a.name if a.kwarg_only else None for a in parsed.arguments]
    return node


def _format(text: str, *args: Any) -> str:
    out, rest = [], text
    for a in args:
        head, sep, rest = rest.partition("{}")
        out.append(head)
        if sep:
            out.append(str(a))
    return "".join(out) + rest


def _set_item(container: Any, key: Any, value: Any) -> Any:
    container[key] = value
    return container


def _slice(seq: Any, start: Any = None, end: Any = None, step: Any = 1) -> Any:
    return seq[slice(start, end, step)]


def _append(seq: list, value: Any) -> list:
    seq.append(value)
    return seq


#: TorchScript's list, string and scalar operators, in Python (their torch.ops forms do not take Python lists)
PYTHON_OPS: dict[str, Callable[..., Any]] = {
    "len": len, "__getitem__": operator.getitem, "__contains__": lambda c, x: x in c, "__is__": operator.is_,
    "__isnot__": operator.is_not, "__not__": operator.not_, "__and__": operator.and_, "__or__": operator.or_,
    "__xor__": operator.xor, "list": list, "slice": _slice, "append": _append, "_set_item": _set_item,
    "format": _format, "warn": lambda *a, **k: None, "str": str, "eq": operator.eq, "ne": operator.ne,
    "lt": operator.lt, "gt": operator.gt, "le": operator.le, "ge": operator.ge, "add": operator.add,
    "sub": operator.sub, "mul": operator.mul, "div": operator.truediv, "floordiv": operator.floordiv,
    "remainder": operator.mod, "neg": operator.neg, "pow": operator.pow, "abs": abs, "min": min, "max": max,
    "floor": math.floor, "ceil": math.ceil, "Int": int, "Float": float, "Bool": bool, "keys": lambda d: list(d),
    "values": lambda d: list(d.values()), "items": lambda d: list(d.items()), "copy": copy.copy,
    "extend": lambda a, b: a.extend(b) or a, "insert": lambda a, i, x: a.insert(i, x) or a,
    "pop": lambda a, i=-1: a.pop(i), "clear": lambda a: a.clear() or a, "sqrt": math.sqrt,
    "__range_length": lambda lo, hi, step: len(range(lo, hi, step)),
    "__derive_index": lambda index, start, step: start + index * step, "is_scripting": lambda: True,
    "get": lambda d, k, default=None: d.get(k, default), "dict": dict,
}


#: container and string operators that run in Python even when the container holds tensors
ALWAYS_PYTHON = {"format", "warn", "__is__", "__isnot__", "append", "_set_item", "list", "keys", "values", "items",
                 "copy", "extend", "insert", "pop", "clear", "get", "dict", "__getitem__", "__contains__", "len",
                 "slice", "add", "mul", "eq", "ne"}


def _in_python(name: str, args: list[Any]) -> bool:
    """Whether a TorchScript operator runs as its Python equivalent: no tensor among its arguments, or a
    container operator (`len`, `__getitem__`, `add` of two lists) whose first argument is not a tensor."""
    if PYTHON_OPS.get(name) is None:
        return False
    if not any(isinstance(a, torch.Tensor) for a in args):
        return True
    return name in ALWAYS_PYTHON and bool(args) and isinstance(args[0], (list, tuple, dict, str)) \
        or name in ("format", "warn", "__is__", "__isnot__")


@dataclass
class _ModuleRef:
    path: str
    module: Any


class Interpreter:
    """Runs a compiled TorchScript graph. `state` maps tensor attribute paths to the tensors to use (meta copies
    or CPU clones); `overlay` holds what the graph assigns (`prim::SetAttr`) so the module is never written to."""

    def __init__(self, module: Any, state: dict[str, Any], device: str) -> None:
        self.module = module
        self.state = state
        self.device = device
        self.overlay: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self.graph = _compile_block(module.inlined_graph, self.types)
        self.current = ""

    def run(self, *inputs: Any) -> Any:
        env: dict[int, Any] = {}
        block = self.graph
        values = [_ModuleRef("", self.module), *inputs]
        if len(values) != len(block.inputs):
            raise TypeError(f"forward() takes {len(block.inputs) - 1} inputs, got {len(inputs)}")
        env.update(zip(block.inputs, values))
        out = self._block(block, env)
        return out[0] if len(out) == 1 else tuple(out)

    def _block(self, block: _Block, env: dict[int, Any]) -> list[Any]:
        for node in block.nodes:
            self._node(node, env)
        return [env[v] for v in block.outputs]

    def _attr(self, owner: _ModuleRef, name: str) -> Any:
        path = f"{owner.path}.{name}" if owner.path else name
        if path in self.overlay:
            return self.overlay[path]
        if path in self.state:
            return self.state[path]
        value = getattr(owner.module, name)
        if isinstance(value, torch.jit.ScriptModule):
            return _ModuleRef(path, value)
        if isinstance(value, torch.Tensor):
            value = torch.empty_like(value, device="meta") if self.device == "meta" else value.detach().clone()
            self.state[path] = value
            return value
        return copy.copy(value) if isinstance(value, (list, dict)) else value

    def _node(self, node: _Node, env: dict[int, Any]) -> None:
        kind = node.kind
        args = [env[i] for i in node.inputs]
        out: Any
        if kind == "prim::Constant":
            value = node.attrs["value"]
            if isinstance(value, torch.Tensor) and self.device == "meta" and value.dim() > 0:
                value = torch.empty_like(value, device="meta")
            out = [value]
        elif kind == "prim::GetAttr":
            owner = args[0]
            if not isinstance(owner, _ModuleRef):
                out = [getattr(owner, node.attrs["name"])]
            else:
                out = [self._attr(owner, node.attrs["name"])]
        elif kind == "prim::SetAttr":
            owner = args[0]
            if not isinstance(owner, _ModuleRef):
                raise Unsupported("prim::SetAttr on an object")
            path = f"{owner.path}.{node.attrs['name']}" if owner.path else node.attrs["name"]
            self.overlay[path] = args[1]
            out = []
        elif kind in ("prim::ListConstruct",):
            out = [list(args)]
        elif kind == "prim::TupleConstruct":
            out = [tuple(args)]
        elif kind == "prim::DictConstruct":
            out = [dict(zip(args[0::2], args[1::2]))]
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            out = list(args[0])
        elif kind == "prim::TupleIndex":
            out = [args[0][args[1]]]
        elif kind == "prim::If":
            branch = node.blocks[0] if args[0] else node.blocks[1]
            out = self._block(branch, env)
        elif kind == "prim::Loop":
            out = self._loop(node, args, env)
        elif kind == "prim::RaiseException":
            raise RuntimeError(str(args[0]) if args else "TorchScript raised")
        elif kind in ("prim::Uninitialized",):
            out = [None]
        elif kind in ("prim::unchecked_cast", "prim::data", "aten::detach_"):
            out = [args[0]]
        elif kind == "prim::dtype":
            out = [_DTYPE_CODES.get(args[0].dtype, 6)]
        elif kind == "prim::device":
            out = [args[0].device]
        elif kind == "prim::layout":
            out = [0]
        elif kind == "prim::requires_grad":
            out = [bool(args[0].requires_grad)]
        elif kind == "prim::is_nested":
            out = [bool(args[0].is_nested)]
        elif kind == "prim::is_cuda":
            out = [bool(args[0].is_cuda)]
        elif kind == "prim::type":
            out = [args[0].type if isinstance(args[0], torch.device) else str(args[0])]
        elif kind == "prim::NumToTensor":
            out = [torch.scalar_tensor(args[0])]
        elif kind in ("prim::min", "prim::max"):
            fn = min if kind == "prim::min" else max
            out = [fn(args[0]) if len(args) == 1 else fn(*args)]
        elif kind == "prim::abs":
            out = [abs(args[0])]
        elif kind == "prim::shape":
            out = [list(args[0].shape)]
        elif kind.startswith(("aten::", "quantized::", "torchvision::")):
            out = self._op(node, args)
        else:
            raise Unsupported(kind)
        env.update(zip(node.outputs, out))

    def _loop(self, node: _Node, args: list[Any], env: dict[int, Any]) -> list[Any]:
        trips, cond, carried = args[0], args[1], list(args[2:])
        body = node.blocks[0]
        i = 0
        while i < trips and cond:
            env.update(zip(body.inputs, [i, *carried]))
            result = self._block(body, env)
            cond, carried = result[0], result[1:]
            i += 1
        return carried

    def _op(self, node: _Node, args: list[Any]) -> list[Any]:
        name = node.kind.split("::")[1]
        if _in_python(name, args):
            return [PYTHON_OPS[name](*args)]
        if node.op is None:
            raise Unsupported(node.kind)
        positional = [a for a, kw in zip(args, node.kwarg_names) if kw is None]
        keywords = {kw: a for a, kw in zip(args, node.kwarg_names) if kw is not None}
        self.current = node.path
        result = node.op(*positional, **keywords)
        if len(node.outputs) == 1:
            return [result]
        return list(result)


def runner(model: torch.jit.ScriptModule, inputs: list[torch.Tensor], device: str) -> Any:
    """The interpreter over the module's graph, or - for a node it does not know - a copy of the module run by
    TorchScript itself, all on one row."""
    from dscalc.trace.run import Runner

    state: dict[str, Any] = {}
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        state[name] = torch.empty_like(t, device="meta") if device == "meta" else t.detach().clone()
    try:
        interpreter = Interpreter(model, state, device)
    except (RuntimeError, AttributeError, TypeError) as e:
        return _native(model, inputs, device, f"its graph could not be read ({type(e).__name__})")
    unsupported = _first_unsupported(interpreter.graph)
    if unsupported:
        return _native(model, inputs, device, f"its graph has {unsupported}, which dscalc's interpreter does not run")

    def call() -> Any:
        return interpreter.run(*inputs)

    return Runner(call, lambda: interpreter.current, list(state.values()), interpreter.types)


_KNOWN_PRIM = {"prim::Constant", "prim::GetAttr", "prim::SetAttr", "prim::ListConstruct", "prim::TupleConstruct",
               "prim::DictConstruct", "prim::ListUnpack", "prim::TupleUnpack", "prim::TupleIndex", "prim::If",
               "prim::Loop", "prim::RaiseException", "prim::Uninitialized", "prim::unchecked_cast", "prim::data",
               "prim::dtype", "prim::device", "prim::layout", "prim::requires_grad", "prim::is_nested",
               "prim::is_cuda", "prim::type", "prim::NumToTensor", "prim::min", "prim::max", "prim::abs",
               "prim::shape"}


def _first_unsupported(block: _Block) -> str | None:
    for node in block.nodes:
        if node.kind.startswith(("aten::", "quantized::", "torchvision::")):
            name = node.kind.split("::")[1]
            if node.op is None and (name not in PYTHON_OPS or PYTHON_OPS[name] is None):
                return node.kind
        elif node.kind not in _KNOWN_PRIM:
            return node.kind
        for b in node.blocks:
            found = _first_unsupported(b)
            if found:
                return found
    return None


def _native(model: torch.jit.ScriptModule, inputs: list[torch.Tensor], device: str, why: str) -> Any:
    """TorchScript runs a copy of the module (on the CPU: TorchScript has no meta run of its own); every op lands
    on the `(model)` row."""
    from dscalc.trace.records import Size
    from dscalc.trace.run import MetaLimit, Runner

    if device == "meta":
        raise MetaLimit(f"TorchScript runs it natively ({why})", Size())
    clone = copy.deepcopy(model)
    note = f"one row for the whole model: {why}"
    return Runner(lambda: clone(*inputs), lambda: "", [*clone.parameters(), *clone.buffers()], notes=[note])

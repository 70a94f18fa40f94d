"""torch.export graphs (`ExportedProgram.module()`), run node by node: each node records the module path it came
from (`node.meta["nn_module_stack"]`), so its ops are attributed to that module - the same rows as the eager model.
On the meta device the graph reads meta copies of its parameters, buffers and constants; on the CPU, clones of
them: the graph module itself is never written to."""

from __future__ import annotations

from typing import Any

import torch


def is_export_graph(model: Any) -> bool:
    """A GraphModule whose nodes carry torch.export's module stacks."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    return any("nn_module_stack" in n.meta for n in model.graph.nodes)


def short_type(qualified: Any) -> str:
    """'torch.nn.modules.conv.Conv2d' -> 'Conv2d' (a class or its qualified name)."""
    text = qualified if isinstance(qualified, str) else getattr(qualified, "__qualname__", str(qualified))
    return text.rsplit(".", 1)[-1]


def module_path(node: torch.fx.Node) -> tuple[str, dict[str, str]]:
    """The innermost module path of a node, and the type of every module on its stack."""
    stack = node.meta.get("nn_module_stack") or {}
    types: dict[str, str] = {}
    path = ""
    for value in stack.values():
        name, kind = value[0], value[1]
        types[name] = short_type(kind)
        path = name
    return path, types


def runner(model: torch.fx.GraphModule, inputs: list[torch.Tensor], device: str) -> Any:
    from dscalc.trace.run import Runner

    state: dict[str, Any] = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        state[name] = torch.empty_like(t, device="meta") if device == "meta" else t.detach().clone()
    current = [""]
    types: dict[str, str] = {}
    for node in model.graph.nodes:
        types.update(module_path(node)[1])

    class Interpreter(torch.fx.Interpreter):
        def fetch_attr(self, target: str) -> Any:
            if target in state:
                return state[target]
            value = super().fetch_attr(target)
            if isinstance(value, torch.Tensor):
                value = torch.empty_like(value, device="meta") if device == "meta" else value.detach().clone()
                state[target] = value
            return value

        def run_node(self, n: torch.fx.Node) -> Any:
            if n.op in ("call_function", "call_method", "call_module"):
                current[0] = module_path(n)[0]
            return super().run_node(n)

    def call() -> Any:
        return Interpreter(model).run(*inputs)

    return Runner(call, lambda: current[0], list(state.values()), types)

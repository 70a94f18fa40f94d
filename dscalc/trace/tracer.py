"""Trace a PyTorch model per layer without its weights: a dispatch mode records every aten op with its shapes and
the module that issued it; the op registry (`trace.ops`) turns conv/matmul ops into exact MACs.

The model is never changed: it runs through torch.func.functional_call on meta copies of its parameters and
buffers, and the module hooks that attribute ops live only inside `_module_stack()`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput, RuntimeFailure, first_line, from_user_code, interrupted
from dscalc.trace.ops import REGISTRY, SHAPE_OPS, shape_of
from dscalc.trace.records import OpRecord, Trace


class _Recorder(TorchDispatchMode):
    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.records: list[OpRecord] = []
        self.uncounted: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        handler = REGISTRY.get(func)
        first = out[0] if isinstance(out, (tuple, list)) else out
        elements = math.prod(first.shape) if isinstance(first, torch.Tensor) else 0
        module = self.stack[-1] if self.stack else ""
        if handler is not None:
            counted = handler.macs(args, kwargs, first) if handler.macs else 0
            if isinstance(counted, LayerCost):  # a convolution: the engine's record, named after its module
                layer = replace(counted, name=module or "conv")
                self.records.append(OpRecord(module, func.__name__, handler.kind, layer.macs, elements, layer))
            else:
                self.records.append(OpRecord(module, func.__name__, handler.kind, counted, elements))
        else:
            name = func.__name__.split(".")[0]
            if name not in SHAPE_OPS:
                self.uncounted[name] = self.uncounted.get(name, 0) + 1
                self.records.append(OpRecord(module, func.__name__, "other", 0, elements))
        return out


@contextlib.contextmanager
def _module_stack(model: torch.nn.Module) -> Iterator[list[str]]:
    """Global forward hooks that keep the path of the running module; removed on exit, whatever happens."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[str] = []

    def pre(module: torch.nn.Module, inputs: Any) -> None:
        stack.append(names.get(id(module), stack[-1] if stack else ""))

    def post(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if stack:
            stack.pop()

    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def trace(model: torch.nn.Module, input_shapes: list[tuple[int, ...]], dtype: torch.dtype = torch.float32) -> Trace:
    """Run `model` once on meta tensors of these shapes and record every op. The model is not modified."""
    from torch.func import functional_call

    scripted = isinstance(model, torch.jit.ScriptModule)  # TorchScript: no stateless call, no module hooks
    device = "cpu" if scripted else "meta"
    state = {n: torch.empty_like(t, device="meta") for n, t in
             [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
    inputs = [torch.zeros(s, dtype=dtype, device=device) for s in input_shapes]
    with _module_stack(model) as stack:
        recorder = _Recorder(stack)
        try:
            with torch.no_grad(), recorder:
                if scripted:
                    out = model(*inputs)
                else:
                    out = functional_call(model, state, tuple(inputs), tie_weights=True, strict=False)
        except (BadInput, RuntimeFailure):
            raise
        except KeyboardInterrupt:
            if interrupted():  # the user pressed Ctrl-C
                raise
            raise from_user_code(KeyboardInterrupt(), f"the model's forward{_where(model, stack)}") from None
        except SystemExit as e:
            raise from_user_code(e, f"the model's forward{_where(model, stack)}") from None
        except Exception as e:  # the user's forward raised: name the module it was in
            raise RuntimeFailure(f"the model's forward raised{_where(model, stack)}: {type(e).__name__}: "
                                 f"{first_line(e)}") from None
    outs = out if isinstance(out, (tuple, list)) else [out]
    return Trace(
        records=recorder.records,
        uncounted=recorder.uncounted,
        module_types={n: type(m).__name__ for n, m in model.named_modules()},
        module_params={n: sum(p.numel() for p in m.parameters(recurse=False)) for n, m in model.named_modules()},
        params=sum(p.numel() for p in model.parameters()),
        input_shapes=[tuple(s) for s in input_shapes],
        output_shapes=[shape_of(o) for o in outs if isinstance(o, torch.Tensor)],
    )


def _where(model: torch.nn.Module, stack: list[str]) -> str:
    """' in module 'layer1.0' (BasicBlock)', or ' in Net.forward' when the model itself was running."""
    path = stack[-1] if stack else ""
    if not path:
        return f" in {type(model).__name__}.forward"
    try:
        culprit = type(model.get_submodule(path)).__name__
    except AttributeError:
        culprit = "module"
    return f" in module '{path}' ({culprit})"

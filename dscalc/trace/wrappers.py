"""What the tracer does to a model before it runs it - never to the model itself:

- unwraps DataParallel, DistributedDataParallel and torch.compile's OptimizedModule (the model inside is what
  computes; its names carry no `module.` / `_orig_mod.` prefix), saying so;
- names a parametrization's pieces (weight_norm, spectral_norm: `conv.parametrizations.weight.original0`) after the
  module they parametrize (`conv`);
- makes the structural copy that runs: every parameter, buffer and tensor attribute replaced by a meta tensor of
  the same shape (so no data is copied, ties and shared modules stay tied and shared), everything else deep-copied,
  so whatever the forward does to its module - attributes, `self.eval()`, hooks it registers - lands on the copy.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch import nn

#: wrapper class name -> the attribute that holds the model it wraps
WRAPPERS = {"DataParallel": "module", "DistributedDataParallel": "module", "OptimizedModule": "_orig_mod"}


def unwrap(model: Any) -> tuple[Any, list[str]]:
    """The model inside any number of wrappers, and one note per wrapper removed."""
    notes: list[str] = []
    while True:
        attr = next((a for cls, a in WRAPPERS.items() if any(c.__name__ == cls for c in type(model).__mro__)), None)
        if attr is None or not isinstance(getattr(model, attr, None), nn.Module):
            return model, notes
        notes.append(f"{type(model).__name__}: profiled the model it wraps ({attr}); names have no '{attr}.' prefix")
        model = getattr(model, attr)


_PARAMETRIZED = re.compile(r"\.?parametrizations\.[^.]+(\.[^.]+)*$")


def canonical(name: str) -> str:
    """A module path with any parametrization part removed: `0.parametrizations.weight.original0` -> `0`."""
    return _PARAMETRIZED.sub("", name) if "parametrizations" in name else name


def type_name(module: nn.Module) -> str:
    """The class name users wrote: a parametrized module's original class (not `ParametrizedConv2d`); a script
    module's original name."""
    if torch.nn.utils.parametrize.is_parametrized(module):
        return type(module).__bases__[0].__name__
    return getattr(module, "original_name", None) or type(module).__name__


def parametrization_note(model: nn.Module) -> str | None:
    """'parametrizations (counted in their modules' rows): 0.weight (_WeightNorm), ...', when there are any."""
    found = []
    for name, module in model.named_modules():
        if torch.nn.utils.parametrize.is_parametrized(module):
            for tensor, plist in module.parametrizations.items():
                kinds = "+".join(type(p).__name__ for p in plist)
                found.append(f"{name + '.' if name else ''}{tensor} ({kinds})")
    if not found:
        return None
    return "parametrizations, counted in the rows of the modules they parametrize: " + ", ".join(found)


def _meta(t: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(t, device="meta")
    if isinstance(t, nn.Parameter):
        return nn.Parameter(meta, requires_grad=t.requires_grad)
    return meta


def meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy on the meta device: tensors replaced by meta tensors of their shape (shared ones stay
    shared), the rest deep-copied. Raises whatever deepcopy raises on an object that cannot be copied."""
    memo: dict[int, Any] = {}
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    tensors = [t for _, t in named]
    for _, module in model.named_modules(remove_duplicate=False):
        tensors.extend(v for v in vars(module).values() if isinstance(v, torch.Tensor))
    for t in tensors:
        if id(t) not in memo:
            memo[id(t)] = _meta(t)
    return copy.deepcopy(model, memo)


def real_copy(model: nn.Module) -> nn.Module:
    """A deep copy on the CPU with the model's own values (for a run that needs real tensors)."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in memo and t.device.type != "cpu":
            moved = t.detach().to("cpu")
            memo[id(t)] = nn.Parameter(moved, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else moved
    return copy.deepcopy(model, memo)


def on_meta(model: nn.Module) -> bool:
    """Whether any of the model's tensors lives on the meta device (it has no values to run for real)."""
    return any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])

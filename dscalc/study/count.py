"""`with dscalc.count() as c: model(x)`: for code that calls its model itself (like FlopCounterMode). The block
runs as written; dscalc notes the outermost nn.Module called in it and the shapes of its tensor inputs, and on
leaving profiles that call exactly as `dscalc.profile(model, shapes)` does (meta copies; the model untouched).
The hooks that watch are global module hooks, removed when the block ends."""

from __future__ import annotations

from typing import Any

from dscalc.errors import BadInput
from dscalc.study.model import ModelStudy


class count:  # noqa: N801 - used as `with dscalc.count() as c`, like torch's FlopCounterMode
    """Profile the model called inside the block: `c.result` is its ModelStudy (`c.results`: one per outermost
    call, when the block calls more than one model or one model on other shapes). Options as `dscalc.profile`."""

    def __init__(self, depth: int | None = None, dtype: str = "float32", **options: Any) -> None:
        self.options = {"depth": depth, "dtype": dtype, **options}
        self.calls: list[tuple[Any, list[tuple[int, ...]]]] = []
        self.results: list[ModelStudy] = []
        self._depth = 0
        self._handles: list[Any] = []

    def __enter__(self) -> count:
        from torch.nn.modules import module as M

        self._handles = [M.register_module_forward_pre_hook(self._pre), M.register_module_forward_hook(self._post)]
        return self

    def _pre(self, module: Any, args: Any) -> None:
        if self._depth == 0:
            import torch

            shapes = [tuple(a.shape) for a in _flat(args) if isinstance(a, torch.Tensor)]
            if (module, shapes) not in [(m, s) for m, s in self.calls]:
                self.calls.append((module, shapes))
        self._depth += 1

    def _post(self, module: Any, args: Any, output: Any) -> None:
        self._depth -= 1

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if exc[0] is not None:
            return
        from dscalc.study.model import profile

        self.results = [profile(model, shapes, **self.options) for model, shapes in self.calls]

    @property
    def result(self) -> ModelStudy:
        if not self.results:
            raise BadInput("no nn.Module was called inside the `with dscalc.count()` block", "count")
        return self.results[0]


def _flat(args: Any) -> list[Any]:
    out: list[Any] = []
    for a in args if isinstance(args, (list, tuple)) else [args]:
        out += _flat(a) if isinstance(a, (list, tuple)) else [a]
    return out

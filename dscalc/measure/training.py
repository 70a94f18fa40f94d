"""Measured training: the callables that run a layer, a depthwise + pointwise pair or a whole model forward, forward
+ backward, and forward + backward + optimizer step - in training mode, with autograd on - each timed by the one
protocol of `measure.timer.measure()` (and its reliability marks). The separable pair's training speedup is
reported beside its MAC ratio and its inference speedup: the three differ, and only a measurement says by how much.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.errors import first_line
from dscalc.measure.modules import module_for, place
from dscalc.measure.settings import Settings
from dscalc.measure.timer import Timing, measure, overlap
from dscalc.measure.verdict import Verdict, decide

#: torch.optim constructors for the optimizers of `cost.training.OPTIMIZERS`
_OPTIM = {"sgd": ("SGD", {"lr": 1e-3}), "momentum": ("SGD", {"lr": 1e-3, "momentum": 0.9}),
          "adam": ("Adam", {"lr": 1e-3}), "adamw": ("AdamW", {"lr": 1e-3})}


@dataclass(frozen=True)
class TrainingTiming:
    """One kernel (or pair, or model) measured three ways: forward (training mode, autograd recording), forward +
    backward, and a whole step (forward + backward + optimizer.step())."""

    name: str
    forward: Timing
    backward: Timing  # forward + backward
    step: Timing | None = None

    @property
    def backward_over_forward(self) -> float | None:
        """(forward + backward) / forward: 3.0 would be 'backward = 2 x forward' in time."""
        f, b = self.forward.median, self.backward.median
        return b / f if f and b else None

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "forward": self.forward.to_dict(),
                               "forward_backward": self.backward.to_dict(),
                               "forward_backward_over_forward": self.backward_over_forward}
        if self.step is not None:
            row["step"] = self.step.to_dict()
        return row


def speedup(a: Timing | None, b: Timing | None) -> float | None:
    """a's median over b's (> 1: b is faster)."""
    if a is None or b is None or not a.median or not b.median:
        return None
    return a.median / b.median


def verdict(a: Timing | None, b: Timing | None) -> Verdict | None:
    """Who wins, a (standard) or b (separable); too close to call where the interquartile ranges overlap."""
    return decide(speedup(a, b), overlap(a, b))


def _callables(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings, optimizer: str,
               input_grad: bool) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]:
    """forward, forward + backward, and forward + backward + step of a module (moved to the device and dtype,
    in training mode); gradients are set to None before each call (zero_grad's default)."""
    import torch

    module, xs = place(module, input_shapes, settings, train=True)
    if input_grad:
        xs = [x.requires_grad_(True) for x in xs]
    params = [p for p in module.parameters() if p.requires_grad]
    cls, kw = _OPTIM[optimizer]
    opt = getattr(torch.optim, cls)(params, **kw) if params else None
    with torch.no_grad():
        probe = module(*xs)
    outs = [o for o in (probe if isinstance(probe, (tuple, list)) else [probe]) if isinstance(o, torch.Tensor)]
    seeds = [torch.randn_like(o) for o in outs]

    def clear() -> None:
        for p in params:
            p.grad = None
        for x in xs:
            x.grad = None

    def forward() -> Any:
        return module(*xs)

    def backward() -> None:
        clear()
        out = module(*xs)
        outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
        torch.autograd.backward(outs, seeds)

    def step() -> None:
        backward()
        if opt is not None:
            opt.step()

    return forward, backward, step


def time_training(module: Any, input_shapes: list[tuple[int, ...]], settings: Settings, name: str,
                  optimizer: str = "adam", input_grad: bool = True, with_step: bool = True) -> TrainingTiming:
    """Forward, forward + backward (and the whole step) of one module, each by the timing protocol; a module
    that cannot be built or moved fails its own row only. The module is timed as a copy."""
    import torch

    failed = None
    with torch.inference_mode(False), torch.enable_grad():
        try:
            fns = _callables(copy.deepcopy(module), input_shapes, settings, optimizer, input_grad)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            failed = "out of memory"
        except (RuntimeError, TypeError, ValueError) as e:
            failed = first_line(e)
        if failed is not None:
            bad = Timing.failed(failed)
            return TrainingTiming(name, bad, bad, bad if with_step else None)
        forward, backward, step = fns
        return TrainingTiming(name, measure(forward, settings, f"{name} forward"),
                              measure(backward, settings, f"{name} forward+backward"),
                              measure(step, settings, f"{name} step") if with_step else None)


def time_layer_training(layer: LayerCost, settings: Settings, optimizer: str = "adam", input_grad: bool = True,
                        name: str | None = None, with_step: bool = True) -> TrainingTiming:
    """One weighted layer as a torch module, trained as a layer inside a network (its input needs a gradient)."""
    try:
        module = module_for(layer)
    except (RuntimeError, TypeError, ValueError) as e:
        bad = Timing.failed(first_line(e))
        return TrainingTiming(name or layer.name, bad, bad, bad if with_step else None)
    return time_training(module, [layer.input_shape], settings, name or layer.name, optimizer, input_grad,
                         with_step)


def time_pair_training(comparison: SeparableComparison, settings: Settings, optimizer: str = "adam",
                       input_grad: bool = True, with_step: bool = True) -> TrainingTiming:
    """The depthwise + pointwise pair run back to back, trained."""
    from torch import nn

    try:
        module = nn.Sequential(module_for(comparison.depthwise), module_for(comparison.pointwise))
    except (RuntimeError, TypeError, ValueError) as e:
        bad = Timing.failed(first_line(e))
        return TrainingTiming("dw then pw", bad, bad, bad if with_step else None)
    return time_training(module, [comparison.depthwise.input_shape], settings, "dw then pw", optimizer, input_grad,
                         with_step)


@dataclass(frozen=True)
class PairTraining:
    """A layer and its separable pair, trained: the training speedup beside the MAC ratios and (when measured)
    the inference speedup."""

    original: TrainingTiming
    pair: TrainingTiming
    mac_speedup: float  # forward MACs, original / separable
    training_mac_speedup: float  # forward + backward MACs
    inference_speedup: float | None = None  # from the inference measurement (inference mode), when made

    @property
    def training_speedup(self) -> float | None:
        return speedup(self.original.backward, self.pair.backward)

    @property
    def step_speedup(self) -> float | None:
        return speedup(self.original.step, self.pair.step)

    @property
    def verdict(self) -> Verdict | None:
        return verdict(self.original.backward, self.pair.backward)

    @property
    def verdict_text(self) -> str | None:
        return None if self.verdict is None else self.verdict.said()

    def to_record(self) -> dict[str, Any]:
        """The same, nested by name (CSV columns: original.forward.median_s, separable..., speedup.training)."""
        data = self.to_dict()
        return {"original": data["rows"][0], "separable": data["rows"][1], "speedup": data["speedup"],
                "verdict": data["verdict"]}

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [self.original.to_dict(), self.pair.to_dict()],
                "speedup": {"macs": self.mac_speedup, "training_macs": self.training_mac_speedup,
                            "inference": self.inference_speedup, "training": self.training_speedup,
                            "step": self.step_speedup},
                "verdict": self.verdict_text}


def pair_training(comparison: SeparableComparison, settings: Settings, optimizer: str, training_mac_speedup: float,
                  inference_speedup: float | None = None, input_grad: bool = True,
                  with_step: bool = True) -> PairTraining:
    original = time_layer_training(comparison.original, settings, optimizer, input_grad,
                                   name=comparison.original.kind, with_step=with_step)
    pair = time_pair_training(comparison, settings, optimizer, input_grad, with_step)
    return PairTraining(original, pair, comparison.original.macs / comparison.macs, training_mac_speedup,
                        inference_speedup)

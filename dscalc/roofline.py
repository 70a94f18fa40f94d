"""Roofline prediction from exact counts and measured device ceilings. Pure Python, no torch.

predicted time = max(FLOPs / peak FLOP/s, bytes / bandwidth, launch floor), per kernel; a
depthwise-separable pair is two kernels, and the depthwise output is written then read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dscalc.records import LayerCost, SeparableComparison


@dataclass(frozen=True)
class Ceilings:
    """What one device can do, as measured by `dscalc device`."""

    device: str
    name: str
    peak_flops: dict[str, float]  # dtype -> FLOP/s of a large matmul
    bandwidth: float  # bytes/s of a large copy (read + write)
    launch: float  # seconds of the smallest op: the launch/dispatch floor

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "name": self.name, "peak_flops": self.peak_flops,
                "bandwidth": self.bandwidth, "launch": self.launch}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ceilings:
        return cls(d["device"], d["name"], {k: float(v) for k, v in d["peak_flops"].items()},
                   float(d["bandwidth"]), float(d["launch"]))


@dataclass(frozen=True)
class Prediction:
    seconds: float
    bound: str  # compute | memory | launch
    compute_s: float
    memory_s: float
    launch_s: float


def predict(layer: LayerCost, ceilings: Ceilings) -> Prediction:
    """Roofline time of one kernel: the slowest of compute, memory traffic and the launch floor."""
    peak = ceilings.peak_flops.get(layer.dtype) or max(ceilings.peak_flops.values())
    compute = layer.flops / peak
    memory = layer.bytes / ceilings.bandwidth
    times = {"compute": compute, "memory": memory, "launch": ceilings.launch}
    bound = max(times, key=lambda k: times[k])
    return Prediction(times[bound], bound, compute, memory, ceilings.launch)


def predict_pair(pair: SeparableComparison, ceilings: Ceilings) -> tuple[Prediction, Prediction, float]:
    """Predictions of the depthwise and pointwise kernels and their sum."""
    dw, pw = predict(pair.depthwise, ceilings), predict(pair.pointwise, ceilings)
    return dw, pw, dw.seconds + pw.seconds

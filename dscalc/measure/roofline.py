"""Roofline prediction from exact counts and measured device ceilings. Pure Python, no torch.

predicted time = max(FLOPs / peak FLOP/s, bytes / bandwidth, launch floor), per kernel; a
depthwise-separable pair is two kernels, and the depthwise output is written then read back.
"""

from __future__ import annotations

from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.measure.ceilings import Ceilings
from dscalc.measure.predict import Prediction


def predict(layer: LayerCost, ceilings: Ceilings) -> Prediction:
    """Roofline time of one kernel: the slowest of compute, memory traffic and the launch floor."""
    return predict_work(layer.flops, layer.bytes, layer.dtype, ceilings)


def predict_work(flops: int, nbytes: int, dtype: str, ceilings: Ceilings) -> Prediction:
    """The roofline of any kernel by its work (a traced op as well as a costed layer)."""
    peak = ceilings.peak_flops.get(dtype) or max(ceilings.peak_flops.values())
    compute = flops / peak
    memory = nbytes / ceilings.bandwidth
    times = {"compute": compute, "memory": memory, "launch": ceilings.launch}
    bound = max(times, key=lambda k: times[k])
    return Prediction(times[bound], bound, ceilings.launch, compute, memory, compute / times[bound] if times[bound]
                      else None, "roofline")


def predict_pair(pair: SeparableComparison, ceilings: Ceilings) -> tuple[Prediction, Prediction, float]:
    """Predictions of the depthwise and pointwise kernels and their sum."""
    dw, pw = predict(pair.depthwise, ceilings), predict(pair.pointwise, ceilings)
    return dw, pw, dw.seconds + pw.seconds

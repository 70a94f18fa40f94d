"""The calibrated latency model: one small, explainable model per kernel kind, fitted to kernels measured on the
user's own device (`measure.calibrate`), and the predictions it makes. Pure Python, no torch, no numpy.

Per kind, a kernel's time is a fixed cost plus its work at an effective rate:

    t = t0 + FLOPs / R_flop + bytes / R_byte        (t0, 1/R_flop, 1/R_byte >= 0)

fitted by non-negative least squares on *relative* error (times span five orders of magnitude, and a 20 µs
depthwise kernel matters as much as a 20 ms one). Each prediction names its bound - the largest of the three
terms: fixed cost, compute or memory - and the efficiency it implies (FLOP/s achieved / the device's matmul peak).
Why this shape and not a per-kind lookup table or a piecewise fit in log space: `benchmarks/bench_predict.py`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dscalc.cost.kinds import WEIGHTED
from dscalc.cost.records import LayerCost
from dscalc.measure.learned import Forest, native_threads, quantile

#: the kernel kinds a calibration measures (its design covers exactly these, tested): the weighted layer kinds of
#: the engine and the memory-bound ops a model also runs
CONV_KINDS = WEIGHTED
#: a depthwise convolution with a depth multiplier > 1 (groups = input channels, several outputs per group) is its
#: own kernel kind: oneDNN runs it by another algorithm, 2-12x the time the depth-multiplier-1 line predicts (the
#: two kinds fitted as one, the line fitted neither: 66% of the depthwise kernels within 25%, 80% apart)
MULTIPLIER = "multiplier"
#: (`activation`: a piecewise-linear one, ReLU, ReLU6, hardswish; `transcendental`: one that evaluates an
#: exponential, sigmoid, SiLU, GELU; `pooling`: a windowed max/avg pool, FLOPs = outputs x window; `globalpool`: a
#: whole map averaged, FLOPs = its inputs; `copy`: a concatenation or a contiguous transpose, bytes only)
MEMORY_KINDS = ("batchnorm", "activation", "transcendental", "add", "pooling", "globalpool", "copy")
KINDS = (*CONV_KINDS, MULTIPLIER, *MEMORY_KINDS)
#: the fused-unit patterns a calibration learns a factor for (`Calibration.units`; recognised by `measure.fusion`)
UNIT_PATTERNS = ("conv", "depthwise", "se", "shuffle", "residual")
#: a rate (FLOP/s, byte/s) above this is none: `measure.ceilings.MAX_RATE`, the cache's check of a rate
NO_RATE = 1e19
#: the names of the three terms, as a prediction's bound
TERMS = ("fixed cost", "compute", "memory")


@dataclass(frozen=True)
class Kernel:
    """What the model needs to know of one kernel: its kind and how much work it does; and, where known, its
    shape (0 = unknown), which the learned model (`measure.learned`) reads the efficiency effects from: channels
    and their divisibility by the vector width, spatial sizes (elements per channel), kernel taps, stride, groups,
    batch."""

    name: str
    kind: str
    flops: int
    bytes: int
    batch: int = 0
    cin: int = 0
    cout: int = 0
    size_in: int = 0  # spatial elements per channel of the input (H*W), 1 for a linear layer
    size_out: int = 0
    taps: int = 0  # kernel elements (k*k)
    stride: int = 0
    groups: int = 0

    @property
    def shaped(self) -> bool:
        return self.batch > 0


def kernel_of(layer: LayerCost) -> Kernel:
    """A costed layer as the model sees it (with its shape; a depthwise conv with a depth multiplier > 1 as a
    `multiplier` kernel)."""
    i, o = layer.input_shape, layer.output_shape
    shape = shape_of(i, o)
    kind = MULTIPLIER if layer.kind == "depthwise" and shape[2] > shape[1] > 0 else layer.kind
    return Kernel(layer.name, kind, layer.flops, layer.bytes, *shape,
                  math.prod(layer.kernel) if layer.kernel else 1, max(layer.stride, default=1), layer.groups)


def shape_of(i: Sequence[int], o: Sequence[int]) -> tuple[int, int, int, int, int]:
    """batch, channels in and out, spatial elements in and out of an (N, C, *spatial) or (rows, features) op."""
    if len(i) < 2 or len(o) < 2:
        return 0, 0, 0, 0, 0
    return i[0], i[1], o[1], math.prod(i[2:]), math.prod(o[2:])


@dataclass(frozen=True)
class Sample:
    """One measured kernel of a calibration (or of a benchmark)."""

    kernel: Kernel
    seconds: float


@dataclass(frozen=True)
class KernelModel:
    """t = fixed + flops * per_flop + bytes * per_byte, for one kind; `error` is the fit's median |pred/meas - 1|."""

    kind: str
    fixed: float  # seconds
    per_flop: float  # seconds per FLOP (1 / effective FLOP/s)
    per_byte: float  # seconds per byte (1 / effective bandwidth)
    samples: int = 0
    error: float = 0.0
    #: the fit's residuals, measured / predicted: their 10th and 90th percentiles (a prediction's interval)
    spread: tuple[float, float] = (1.0, 1.0)

    def terms(self, k: Kernel) -> tuple[float, float, float]:
        return self.fixed, k.flops * self.per_flop, k.bytes * self.per_byte

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "fixed_s": self.fixed, "flop_per_s": 1 / self.per_flop if self.per_flop else None,
                "byte_per_s": 1 / self.per_byte if self.per_byte else None, "samples": self.samples,
                "median_error": self.error, "ratio_q10": self.spread[0], "ratio_q90": self.spread[1]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelModel:
        return cls(d["kind"], float(d["fixed_s"]), 1 / float(d["flop_per_s"]) if d.get("flop_per_s") else 0.0,
                   1 / float(d["byte_per_s"]) if d.get("byte_per_s") else 0.0, int(d.get("samples", 0)),
                   float(d.get("median_error", 0.0)),
                   (float(d.get("ratio_q10", 1.0)), float(d.get("ratio_q90", 1.0))))


@dataclass(frozen=True)
class Prediction:
    """A predicted latency: the total, its three terms, the term that dominates, and the efficiency it implies."""

    seconds: float
    bound: str  # fixed cost | compute | memory (or a roofline's compute | memory | launch; '2 kernels' for a pair)
    fixed_s: float
    compute_s: float
    memory_s: float
    efficiency: float | None = None  # FLOP/s achieved / the device's matmul peak (None where unknown)
    model: str = "calibrated"  # calibrated | learned | roofline
    #: the interval the time likely lies in (seconds): the learned ensemble's spread widened by its held-out
    #: residuals, or the linear fit's residuals; None where unknown (the roofline)
    low: float | None = None
    high: float | None = None

    @property
    def interval(self) -> tuple[float, float] | None:
        return (self.low, self.high) if self.low is not None and self.high is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"predicted_s": self.seconds, "bound": self.bound, "fixed_s": self.fixed_s,
                "compute_s": self.compute_s, "memory_s": self.memory_s, "efficiency": self.efficiency,
                "model": self.model, "low_s": self.low, "high_s": self.high}


@dataclass(frozen=True)
class Calibration:
    """The fitted models of one device, thread count, dtype, memory format and runtime, with when it was made."""

    device: str
    name: str
    threads: int
    dtype: str
    channels_last: bool
    runtime: str
    torch: str
    measured_at: float
    seconds: float  # how long calibrating took
    peak_flops: float | None  # the device's matmul peak at this dtype (for efficiencies)
    models: dict[str, KernelModel] = field(default_factory=dict)
    load: float | None = None
    #: measured / predicted time of the reference chains (`measure.calibrate.chains`): a kernel inside a network
    #: runs slower than alone (its weights and inputs are not hot in cache); a whole model's prediction is scaled
    in_network: float = 1.0
    tf32: bool = False  # CUDA: measured with TF32 matmuls and cuDNN convs allowed (a calibration of its own)
    #: the cap $DSCALC_MAX_RUN_TIME put on each measurement (None: the full design's budget); a shortened
    #: calibration is cached under its own key and shown as shortened
    max_run_time: float | None = None
    #: measured / predicted time of short chains of each fused-unit pattern (`measure.fusion`: conv, depthwise,
    #: se, shuffle, residual) on this runtime; a whole model's units are scaled by their pattern's factor
    units: dict[str, float] = field(default_factory=dict)
    #: the learned per-kind models (`measure.learned`, fitted where scikit-learn was installed): a shaped kernel
    #: of such a kind is predicted by its forest, every other one by the linear model
    learned: dict[str, Forest] = field(default_factory=dict)
    #: the kernels the calibration measured (design and adaptive samples): what a benchmark keeps disjoint from
    samples: tuple[Sample, ...] = ()
    #: the budget (seconds) the calibration was given, and how many kernels adaptive sampling added
    budget: float | None = None
    adaptive: int = 0
    #: inside a network every kernel that runs also moves its bytes at this rate (bytes/s) and pays this much more
    #: (seconds), beyond its time alone: its data and code come from memory, not from the caches a kernel timed
    #: alone keeps hot. Fitted on the reference chains timed whole (`measure.fusion.fit_network`); None where they
    #: ran no slower than their kernels alone (then the factors above scale a whole model)
    network_bandwidth: float | None = None
    network_overhead: float | None = None

    @property
    def native_threads(self) -> int:
        """What its forests' `torch_native_conv` feature was computed with (`learned.native_threads`)."""
        return native_threads(self.device, self.runtime, self.dtype, self.threads)

    @property
    def network(self) -> tuple[float | None, float | None]:
        """The in-network terms (bandwidth, overhead per kernel) `measure.fusion.predict` adds."""
        return self.network_bandwidth, self.network_overhead

    def network_terms(self) -> str:
        """What the calibration adds to each kernel inside a network, in words."""
        terms = ([f"its bytes at {self.network_bandwidth / 1e9:.1f} GB/s"] if self.network_bandwidth else []) + \
            ([f"{self.network_overhead * 1e6:.1f} µs"] if self.network_overhead else [])
        return " plus ".join(terms) + ", as fitted on reference chains timed whole here"

    def predict(self, k: Kernel, linear: bool = False) -> Prediction:
        """The kernel's predicted time: learned where a forest of its kind was fitted and its shape is known
        (unless `linear`), else the linear model; with its interval."""
        model = self.models.get(k.kind) or self.models.get(_FALLBACK.get(k.kind, ""))
        if model is None:
            raise KeyError(f"no calibrated model for {k.kind} kernels")
        fixed, compute, memory = model.terms(k)
        total = fixed + compute + memory
        bound = TERMS[max(range(3), key=lambda i: (fixed, compute, memory)[i])]
        forest = None if linear or not k.shaped else self.learned.get(k.kind)
        if forest is not None and total > 0:
            seconds, low, high = forest.predict(k, total, self.native_threads)
            scale = seconds / total  # the terms keep their shares (the bound names the same term)
            fixed, compute, memory = fixed * scale, compute * scale, memory * scale
            name = "learned"
        else:
            seconds, low, high = total, total * min(model.spread[0], 1.0), total * max(model.spread[1], 1.0)
            name = "calibrated"
        eff = (k.flops / seconds) / self.peak_flops if self.peak_flops and seconds > 0 and k.flops else None
        return Prediction(seconds, bound, fixed, compute, memory, eff, name, low, high)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "name": self.name, "threads": self.threads, "dtype": self.dtype,
                "channels_last": self.channels_last, "runtime": self.runtime, "torch": self.torch,
                "measured_at": self.measured_at, "seconds": self.seconds, "peak_flops": self.peak_flops,
                "load": self.load, "in_network": self.in_network, "tf32": self.tf32,
                "models": {k: m.to_dict() for k, m in self.models.items()},
                **({"max_run_time": self.max_run_time} if self.max_run_time is not None else {}),
                **({"units": dict(self.units)} if self.units else {}),
                **({"learned": {k: f.to_dict() for k, f in self.learned.items()}} if self.learned else {}),
                **({"samples": [sample_to_list(s) for s in self.samples]} if self.samples else {}),
                **({"budget": self.budget, "adaptive": self.adaptive} if self.budget is not None else {}),
                **({"network_bandwidth": self.network_bandwidth} if self.network_bandwidth is not None else {}),
                **({"network_overhead": self.network_overhead} if self.network_overhead is not None else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any], forests: dict[str, Forest] | None = None) -> Calibration:
        """The calibration of a cache entry (`forests`: its learned models, where the caller built them already)."""
        if forests is None:
            forests = {k: Forest.from_dict(f) for k, f in d.get("learned", {}).items()}
        return cls(d["device"], d["name"], int(d["threads"]), d["dtype"], bool(d["channels_last"]), d["runtime"],
                   d["torch"], float(d["measured_at"]), float(d["seconds"]),
                   None if d.get("peak_flops") is None else float(d["peak_flops"]),
                   {k: KernelModel.from_dict(m) for k, m in d["models"].items()},
                   None if d.get("load") is None else float(d["load"]), float(d.get("in_network", 1.0)),
                   bool(d.get("tf32", False)), None if d.get("max_run_time") is None else float(d["max_run_time"]),
                   {str(k): float(v) for k, v in (d.get("units") or {}).items()},
                   forests,
                   tuple(sample_from_list(s) for s in d.get("samples", [])),
                   None if d.get("budget") is None else float(d["budget"]), int(d.get("adaptive", 0)),
                   None if d.get("network_bandwidth") is None else float(d["network_bandwidth"]),
                   None if d.get("network_overhead") is None else float(d["network_overhead"]))


def sample_to_list(s: Sample) -> list[Any]:
    """A measured kernel as one JSON row: name, kind, flops, bytes, the shape fields, seconds."""
    k = s.kernel
    return [k.name, k.kind, k.flops, k.bytes, k.batch, k.cin, k.cout, k.size_in, k.size_out, k.taps, k.stride,
            k.groups, s.seconds]


def sample_from_list(row: Any) -> Sample:
    """The inverse of sample_to_list, checked (ValueError names what is wrong)."""
    if not isinstance(row, list) or len(row) != 13:
        raise ValueError("a sample: expected a row of 13 values")
    name, kind, *counts, seconds = row
    if not isinstance(name, str) or not isinstance(kind, str) or not all(type(c) is int and c >= 0 for c in counts):
        raise ValueError("a sample: expected a name, a kind and counts")
    if type(seconds) not in (int, float) or not 0 < seconds < 1e4:
        raise ValueError("a sample: expected seconds")
    return Sample(Kernel(name, kind, *counts), float(seconds))


#: a kind with too few samples borrows the model of its nearest relative
#: the model a kind borrows where a calibration has none of its own (one cached before the kind was measured)
_FALLBACK = {"grouped": "standard", "transposed": "standard", "linear": "pointwise", "globalpool": "activation",
             "copy": "activation", "transcendental": "activation", MULTIPLIER: "depthwise"}


def pair(first: Prediction, second: Prediction) -> Prediction:
    """Two kernels run back to back (a separable pair): their times add, and so do their intervals' ends (the
    worst case: both kernels err the same way); the bound is '2 kernels'."""
    both = first.interval is not None and second.interval is not None
    return Prediction(first.seconds + second.seconds, "2 kernels", first.fixed_s + second.fixed_s,
                      first.compute_s + second.compute_s, first.memory_s + second.memory_s, None, first.model,
                      (first.low or 0) + (second.low or 0) if both else None,
                      (first.high or 0) + (second.high or 0) if both else None)


def speedup_interval(original: Prediction, separable: Prediction) -> tuple[float, float] | None:
    """The predicted speedup's interval (original / separable, each end against the other's opposite end)."""
    if original.interval is None or separable.interval is None or not separable.low or not separable.high:
        return None
    return (original.low or 0) / separable.high, (original.high or 0) / separable.low


# -------------------------------------------------------------------------------------------------- fitting

def least_squares(rows: list[list[float]], target: list[float]) -> list[float] | None:
    """Least squares by the normal equations (a 1x1..3x3 system), None when singular."""
    n = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    b = [sum(r[i] * t for r, t in zip(rows, target)) for i in range(n)]
    for col in range(n):  # Gauss-Jordan with partial pivoting
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-300:
            return None
        a[col], a[pivot], b[col], b[pivot] = a[pivot], a[col], b[pivot], b[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(n)]


def fit(kind: str, samples: Sequence[Sample]) -> KernelModel:
    """Non-negative least squares on relative error over the subsets of {fixed, flops, bytes} (7 of them): the
    best fit whose coefficients are all >= 0."""
    if not samples:
        raise ValueError(f"no samples to fit {kind} kernels")
    features = [(1.0, float(s.kernel.flops), float(s.kernel.bytes)) for s in samples]
    best: tuple[float, list[float]] | None = None
    for size in (1, 2, 3):
        for subset in itertools.combinations(range(3), size):
            rows = [[f[i] / s.seconds for i in subset] for f, s in zip(features, samples)]
            coef = least_squares(rows, [1.0] * len(samples))
            if coef is None or any(c < 0 for c in coef):
                continue
            full = [0.0, 0.0, 0.0]
            for i, c in zip(subset, coef):
                full[i] = c
            loss = sum((sum(c * x for c, x in zip(full, f)) / s.seconds - 1) ** 2 for f, s in zip(features, samples))
            if best is None or loss < best[0]:
                best = (loss, full)
    if best is None:  # nothing non-negative fits: the median time as a fixed cost
        best = (0.0, [sorted(s.seconds for s in samples)[len(samples) // 2], 0.0, 0.0])
    # a term whose rate would pass NO_RATE is no term (the fit's round-off: an ORT calibration fitted 'add' kernels
    # at 2.2e25 FLOP/s, which its own cache check then rejected as out of range)
    fixed, per_flop, per_byte = (c if c >= 1 / NO_RATE else 0.0 for c in best[1])
    model = KernelModel(kind, fixed, per_flop, per_byte, len(samples))
    ratios = [s.seconds / max(sum(model.terms(s.kernel)), 1e-12) for s in samples]
    errors = sorted(abs(1 / r - 1) for r in ratios)
    return KernelModel(kind, fixed, per_flop, per_byte, len(samples), errors[len(errors) // 2],
                       (quantile(ratios, 0.1), quantile(ratios, 0.9)))



def fit_all(samples: Iterable[Sample]) -> dict[str, KernelModel]:
    by_kind: dict[str, list[Sample]] = {}
    for s in samples:
        by_kind.setdefault(s.kernel.kind, []).append(s)
    return {kind: fit(kind, group) for kind, group in by_kind.items() if len(group) >= 3}


def relative_error(predicted: float, measured: float) -> float:
    """|predicted / measured - 1|."""
    return abs(predicted / measured - 1) if measured > 0 else math.inf

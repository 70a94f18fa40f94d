"""The learned latency model: per kernel kind, an ensemble of regression trees (scikit-learn's ExtraTrees, the
optional `learn` extra) that corrects the linear model (`measure.predict.KernelModel`) in log space, from features
that carry what one line per kind cannot follow - channels in and out and their divisibility by the vector width
(oneDNN's blocking), spatial size, kernel taps, stride, groups, batch, which of its two convolution kernels torch
picks on a CPU (`torch_native_conv`) - beside the work (FLOPs, bytes) and the linear model's own prediction:

    log(t) = log(t_linear) + mean over trees of tree(features)

Why the residual and not log(t) itself, and why ExtraTrees: they had the lower held-out error on the recorded data
(`tests/data/calibration_samples.json`, `tests/test_learned.py`). Each prediction carries an interval: the spread
of the per-tree predictions (10th-90th percentile) widened by the ensemble's out-of-bag residuals.

Fitting needs scikit-learn; predicting does not: the fitted trees are exported to plain JSON arrays (per tree:
children, split feature, threshold, leaf value - no pickle) that live in the calibration's cache entry, are checked
when read (`checked`), and are evaluated here in pure Python (no numpy, no torch, no sklearn import).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dscalc.measure.predict import Kernel, Sample

INSTALL = 'pip install "dscalc[learn]"'
#: the features, in order (the JSON names them so an entry of another layout is rejected, not misread)
FEATURES = ("log2_cin", "log2_cout", "cin_pow2", "cout_pow2", "log2_size_in", "log2_size_out", "taps", "stride",
            "log2_groups", "log2_cin_per_group", "log2_batch", "log2_flops", "log2_bytes", "log2_intensity",
            "log2_linear_ns", "torch_native_conv")
TREES, MIN_LEAF, MIN_SAMPLES, SEED = 60, 2, 6, 31
#: the interval's percentiles of the per-tree predictions (and of the out-of-bag residuals that widen it)
LOW_Q, HIGH_Q = 0.1, 0.9


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else 0.0


def _pow2(c: int) -> float:
    """log2 of the largest power of two dividing c (capped at 7: 128 and beyond block alike); 0 unknown."""
    return float(min((c & -c).bit_length() - 1, 7)) if c > 0 else 0.0


#: torch's CPU convolution takes its native path for a float32 input of at most this many elements (batch 1)
NATIVE_CONV_ELEMENTS = 20480
#: the kernel kinds torch's float32 CPU convolution may run on its native path (groups 1, not transposed)
NATIVE_CONV_KINDS = ("standard", "pointwise")


def torch_native_conv(k: Kernel, threads: int) -> bool:
    """Whether torch's float32 convolution on a CPU (eager, and torch.compile's extern convolution) runs `k` on
    its native kernel (`_slow_conv2d_forward`: im2col + GEMM) instead of oneDNN's (`mkldnn_convolution`), by the
    rule of ATen's `ConvParams::use_mkldnn` (`threads`: torch's thread count; 0 where the calibration's runtime
    does not choose so - another dtype, device or runtime): a convolution with groups 1 runs natively when its
    batch is 1, its kernel is no larger than 3 on one side at least and its input holds at most 20,480 elements,
    or, on one thread, when it is a 1x1 convolution with stride 1 and a batch under 16. The two run at rates up to
    3x apart, in either direction (`benchmarks/bench_conv_paths.py`, results/conv_paths.txt, an AMD EPYC VM at 2
    threads: a pointwise 404->64 on 7² 33 µs native, 420->64 94 µs on oneDNN; 3x3 convs 1.3x faster per FLOP on
    oneDNN), a step one line per kind cannot follow. The kernel's taps stand for its sides: a square number above
    9 as a square kernel larger than 3, any other as one with a side of at most 3 (a 2x8 or a 4x5 kernel is
    misread)."""
    if threads <= 0 or k.kind not in NATIVE_CONV_KINDS or k.groups > 1 or not k.shaped:
        return False
    if threads == 1 and k.kind == "pointwise" and k.stride == 1 and k.batch < 16:
        return True
    small_kernel = k.taps <= 9 or math.isqrt(k.taps) ** 2 != k.taps  # square up to 3x3, or not square (1 x k)
    return k.batch == 1 and small_kernel and k.batch * k.cin * k.size_in <= NATIVE_CONV_ELEMENTS


def native_threads(device: str, runtime: str, dtype: str, threads: int) -> int:
    """`torch_native_conv`'s thread count for a calibration: its threads where torch picks its CPU convolution
    kernel by shape (float32 on the CPU, eager or torch.compile), else 0."""
    return threads if device == "cpu" and runtime in ("eager", "compile") and dtype == "float32" else 0


def features(k: Kernel, linear_s: float, native_threads: int = 0) -> list[float]:
    """The learned model's inputs for one kernel (FEATURES, in order); `native_threads`: torch's thread count
    where the calibration's runtime picks torch's CPU convolution kernel by shape (`torch_native_conv`), else 0."""
    groups = max(k.groups, 1)
    return [_log2(k.cin), _log2(k.cout), _pow2(k.cin), _pow2(k.cout), _log2(k.size_in), _log2(k.size_out),
            float(k.taps), float(k.stride), _log2(groups), _log2(k.cin / groups), _log2(k.batch), _log2(k.flops),
            _log2(k.bytes), _log2(k.flops / k.bytes) if k.bytes else 0.0, _log2(linear_s * 1e9),
            float(torch_native_conv(k, native_threads))]


def _f32(x: float) -> float:
    """x as the float32 scikit-learn's trees compare (its thresholds are doubles between float32 values)."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default), of a non-empty sequence."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


@dataclass(frozen=True)
class Tree:
    """One regression tree as flat arrays (scikit-learn's `tree_` layout): node i splits on feature[i] at
    threshold[i] (x <= threshold goes left) unless left[i] == -1, a leaf whose prediction is value[i]."""

    left: tuple[int, ...]
    right: tuple[int, ...]
    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    value: tuple[float, ...]

    def __call__(self, x: Sequence[float]) -> float:
        node = 0
        left, right, feature, threshold = self.left, self.right, self.feature, self.threshold
        while left[node] != -1:
            node = left[node] if x[feature[node]] <= threshold[node] else right[node]
        return self.value[node]

    def to_dict(self) -> dict[str, list[Any]]:
        return {"left": list(self.left), "right": list(self.right), "feature": list(self.feature),
                "threshold": list(self.threshold), "value": list(self.value)}


class BadForest(ValueError):
    """A learned model's JSON that is not a valid forest (the cache entry is measured again)."""


def _ints(d: dict[str, Any], name: str, n: int | None) -> list[int]:
    v = d.get(name)
    if not isinstance(v, list) or (n is not None and len(v) != n) or not 0 < len(v) <= 1 << 16:
        raise BadForest(f"{name}: expected a list of {n or 'some'} integers")
    if not all(type(x) is int for x in v):
        raise BadForest(f"{name}: expected integers")
    return v


def _floats(d: dict[str, Any], name: str, n: int, bound: float) -> list[float]:
    v = d.get(name)
    if not isinstance(v, list) or len(v) != n:
        raise BadForest(f"{name}: expected a list of {n} numbers")
    if not all(type(x) in (int, float) and math.isfinite(x) and abs(x) <= bound for x in v):
        raise BadForest(f"{name}: expected finite numbers within ±{bound:g}")
    return [float(x) for x in v]


def tree_from_dict(d: Any) -> Tree:
    """A tree from its JSON, every array checked: equal lengths, children after their parent (so evaluation ends),
    a leaf has no children and an inner node two, features in range, finite thresholds and values."""
    if not isinstance(d, dict):
        raise BadForest("tree: expected an object")
    left = _ints(d, "left", None)
    n = len(left)
    right, feature = _ints(d, "right", n), _ints(d, "feature", n)
    threshold = _floats(d, "threshold", n, 1e12)
    value = _floats(d, "value", n, 50.0)  # a log ratio: e^50 is no correction
    for i in range(n):
        leaf = left[i] == -1
        if leaf != (right[i] == -1):
            raise BadForest(f"node {i}: one child")
        if not leaf and not (i < left[i] < n and i < right[i] < n and 0 <= feature[i] < len(FEATURES)):
            raise BadForest(f"node {i}: a child or feature out of range")
    return Tree(tuple(left), tuple(right), tuple(feature), tuple(threshold), tuple(value))


@dataclass(frozen=True)
class Forest:
    """The learned model of one kernel kind: trees of log(measured / linear prediction), their out-of-bag
    residual quantiles (log), and their held-out (out-of-bag) median error."""

    kind: str
    trees: tuple[Tree, ...]
    residual: tuple[float, float] = (0.0, 0.0)  # LOW_Q and HIGH_Q quantiles of log(measured / predicted), OOB
    samples: int = 0
    error: float = 0.0  # median |predicted / measured - 1| out of bag

    def log_ratios(self, x: Sequence[float]) -> list[float]:
        x = [_f32(v) for v in x]
        return [t(x) for t in self.trees]

    def predict(self, k: Kernel, linear_s: float, native_threads: int) -> tuple[float, float, float]:
        """The predicted seconds and the interval (low, high) around it (`native_threads`: its calibration's, as
        `features` takes it)."""
        per_tree = self.log_ratios(features(k, linear_s, native_threads))
        mean = sum(per_tree) / len(per_tree)
        lo = math.hypot(mean - quantile(per_tree, LOW_Q), min(self.residual[0], 0.0))
        hi = math.hypot(quantile(per_tree, HIGH_Q) - mean, max(self.residual[1], 0.0))
        return linear_s * math.exp(mean), linear_s * math.exp(mean - lo), linear_s * math.exp(mean + hi)

    def spread(self, k: Kernel, linear_s: float, native_threads: int) -> float:
        """The per-tree predictions' standard deviation (log): where adaptive sampling measures next."""
        per_tree = self.log_ratios(features(k, linear_s, native_threads))
        mean = sum(per_tree) / len(per_tree)
        return math.sqrt(sum((p - mean) ** 2 for p in per_tree) / len(per_tree))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "features": list(FEATURES), "trees": [t.to_dict() for t in self.trees],
                "residual": list(self.residual), "samples": self.samples, "median_error": self.error}

    @classmethod
    def from_dict(cls, d: Any) -> Forest:
        """A forest from its JSON, checked (BadForest names what is wrong)."""
        if not isinstance(d, dict):
            raise BadForest("expected an object")
        if d.get("features") != list(FEATURES):
            raise BadForest("features: another layout")
        trees = d.get("trees")
        if not isinstance(trees, list) or not 0 < len(trees) <= 1000:
            raise BadForest("trees: expected a list of trees")
        residual = _floats(d, "residual", 2, 50.0)
        samples, error = d.get("samples", 0), d.get("median_error", 0.0)
        if type(samples) is not int or samples < 0 or type(error) not in (int, float) or not 0 <= error < 1e6:
            raise BadForest("samples, median_error: expected a count and an error")
        if not isinstance(d.get("kind"), str):
            raise BadForest("kind: expected a name")
        return cls(d["kind"], tuple(tree_from_dict(t) for t in trees), (residual[0], residual[1]), samples,
                   float(error))


# -------------------------------------------------------------------------------------- fitting (scikit-learn)

def available() -> bool:
    """Whether scikit-learn is installed (fitting needs it; predicting from a fitted forest does not)."""
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def export(kind: str, ensemble: Any, samples: int, residual: tuple[float, float], error: float) -> Forest:
    """A fitted scikit-learn tree ensemble (regressor) as a Forest of plain arrays."""
    trees = []
    for est in ensemble.estimators_:
        t = est.tree_
        trees.append(Tree(tuple(int(v) for v in t.children_left), tuple(int(v) for v in t.children_right),
                          tuple(max(int(v), 0) for v in t.feature), tuple(float(v) for v in t.threshold),
                          tuple(float(v) for v in t.value[:, 0, 0])))
    return Forest(kind, tuple(trees), residual, samples, error)


def training_set(samples: Sequence[Sample], linear: Any,
                 native_threads: int = 0) -> tuple[list[list[float]], list[float]]:
    """The features and targets (log(measured / linear prediction)) of one kind's shaped samples."""
    rows = [s for s in samples if s.kernel.shaped and s.seconds > 0]
    base = [max(sum(linear.terms(s.kernel)), 1e-9) for s in rows]
    return ([features(s.kernel, b, native_threads) for s, b in zip(rows, base)],
            [math.log(s.seconds / b) for s, b in zip(rows, base)])


def ensemble(x: list[list[float]], y: list[float], seed: int = SEED) -> Any:
    """The fitted scikit-learn ensemble (bootstrapped, so that each tree leaves samples out of bag)."""
    import warnings

    from sklearn.ensemble import ExtraTreesRegressor

    model = ExtraTreesRegressor(n_estimators=TREES, min_samples_leaf=MIN_LEAF, bootstrap=True, oob_score=True,
                                random_state=seed, n_jobs=1)
    with warnings.catch_warnings():  # few samples: some are never out of bag (their OOB prediction is NaN)
        warnings.simplefilter("ignore")
        model.fit(x, y)
    return model


def fit_kind(kind: str, samples: Sequence[Sample], linear: Any, seed: int = SEED,
             native_threads: int = 0) -> Forest | None:
    """The learned model of one kind from its measured kernels and the kind's linear model; None with too few
    shaped samples."""
    x, y = training_set(samples, linear, native_threads)
    if len(y) < MIN_SAMPLES:
        return None
    model = ensemble(x, y, seed)
    oob = [float(p) for p in model.oob_prediction_]
    residuals = [t - p for t, p in zip(y, oob) if math.isfinite(p)]
    if residuals:
        residual = (quantile(residuals, LOW_Q), quantile(residuals, HIGH_Q))
        error = quantile([abs(math.exp(-r) - 1) for r in residuals], 0.5)  # |predicted / measured - 1|
    else:
        residual, error = (0.0, 0.0), 0.0
    return export(kind, model, len(y), residual, error)


def fit_learned(samples: Sequence[Sample], linear: dict[str, Any], seed: int = SEED, guard: bool = True,
                native_threads: int = 0) -> dict[str, Forest]:
    """A Forest per kind that has a linear model and enough shaped samples (needs scikit-learn; `native_threads`
    as `features` takes it); with `guard`,
    only where the forest's out-of-bag median error is below the linear model's own (in-sample, so optimistic)
    median error - on noisy measurements trees fit the noise, and the line stays the better guess."""
    by_kind: dict[str, list[Sample]] = {}
    for s in samples:
        by_kind.setdefault(s.kernel.kind, []).append(s)
    out = {}
    for kind, group in by_kind.items():
        if kind in linear:
            forest = fit_kind(kind, group, linear[kind], seed, native_threads)
            if forest is not None and (not guard or forest.error < linear[kind].error):
                out[kind] = forest
    return out

"""`dscalc search`: every candidate of a design space (`cost.search`) costed exactly, its latency predicted per block
(one prediction per distinct block signature, cached: the 27 candidates of `cifar_modules` need a handful), the
constraints applied, the Pareto front over the chosen axes marked, an optional score ranked, and, with timing
settings, the front measured whole and compared with its prediction. `run_search` does all the work and returns one
immutable record; rendering is `report.search`'s.

Torch is imported only to predict (the device's ceilings and calibration are keyed by the torch version) and to
time: the pure cost path (`--max-params`, `--axes macs,params`) never imports it.
"""

from __future__ import annotations

import ast
import csv
import math
import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dscalc.cost import search as S
from dscalc.cost.formulas import numel
from dscalc.cost.kinds import WEIGHTED
from dscalc.cost.records import LayerCost
from dscalc.errors import BadInput, RuntimeFailure

#: what --axes may name (all minimised), and the candidate figure each reads
AXES = ("latency", "params", "keras_params", "weights", "macs", "activations", "training_memory", "score")
#: a memory-bound row kind -> the calibrated kernel kind that models it (views and no-ops are free)
_MEMORY_KIND = {"bn": "batchnorm", "relu": "activation", "relu6": "activation", "activation": "activation",
                "softmax": "transcendental", "sigmoid": "transcendental", "swish": "transcendental",
                "hardswish": "activation",
                "maxpool": "pooling", "avgpool": "pooling", "gap": "globalpool", "add": "add"}


# ---------------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Block:
    """One entry of the latency lookup table: a kernel by its signature, predicted (and measured)."""

    signature: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    bytes: int
    predicted_s: float | None
    bound: str | None
    model: str | None  # calibrated | roofline | None (a memory-bound op without a calibration)
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)  # runtime -> Timing.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "macs": self.macs, "bytes": self.bytes, "predicted_s": self.predicted_s, "bound": self.bound,
                "model": self.model, "measured": self.measured}


@dataclass(frozen=True)
class Result:
    """One candidate in the search: its costs, prediction, measurement, score and standing."""

    candidate: S.Candidate
    latency_s: float | None  # predicted, end to end
    measured: Any = None  # Timing of the whole network (front only, with --time)
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    violates: tuple[str, ...] = ()  # the constraints it breaks
    front: bool = False
    rank: int = 0

    @property
    def feasible(self) -> bool:
        return not self.violates

    def axis(self, name: str) -> float | None:
        if name == "latency":
            return self.latency_s
        if name == "score":
            return self.score
        return self.candidate.fields()[name]

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"rank": self.rank, **self.candidate.to_dict(), "predicted_s": self.latency_s,
                               "score": self.score, "front": self.front, "feasible": self.feasible,
                               "violates": list(self.violates)}
        if self.metrics:
            row["metrics"] = self.metrics
        if self.measured is not None:
            row["measured"] = self.measured.to_dict()
        return row


@dataclass(frozen=True)
class SearchResult:
    space: S.Space
    method: str  # exhaustive | sampled (optuna ...)
    results: tuple[Result, ...]  # ranked
    axes: tuple[str, ...]
    constraints: dict[str, float | int]
    score: str | None
    blocks: dict[str, Block]
    predictions: int  # how many predictions the per-block cache made
    prediction: str | None  # what the predictions come from (None: not predicted)
    device: str | None
    batch: int
    dtype: str
    optimizer: str
    reorders: tuple[dict[str, Any], ...] = ()  # pairs on the front whose measured order differs from predicted
    notes: tuple[str, ...] = ()

    @property
    def front(self) -> list[Result]:
        return [r for r in self.results if r.front]

    def lut(self) -> dict[str, Any]:
        """The per-block latency lookup table (block signature -> predicted and measured latency per runtime)."""
        return {"format": "dscalc-lut/1", "space": self.space.name, "device": self.device,
                "prediction": self.prediction, "batch": self.batch, "dtype": self.dtype,
                "blocks": {sig: b.to_dict() for sig, b in sorted(self.blocks.items())}}


# ---------------------------------------------------------------------------------------- block latency

def signature(row: LayerCost) -> str:
    """What decides a kernel's latency, as one line: `depthwise 3x3/s2 b1x64x32x32->b1x64x16x16 bias float32`."""
    geo = row.geometry()
    shapes = "x".join(map(str, row.input_shape)) + "->" + "x".join(map(str, row.output_shape))
    pads = "" if not row.padding or all(a == b for a, b in row.padding) else " pad" + "".join(
        f"{a}{b}" for a, b in row.padding)
    return f"{row.kind} {geo}{pads} {shapes}{' bias' if row.bias else ''} {row.dtype}".replace("  ", " ")


class BlockCache:
    """Predicted latency per block signature: each distinct kernel predicted once."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.blocks: dict[str, Block] = {}
        self.rows: dict[str, LayerCost] = {}
        self.calls = 0

    def block(self, row: LayerCost) -> Block | None:
        if row.kind not in WEIGHTED and row.kind not in _MEMORY_KIND:
            return None  # flatten, dropout, concat, softmax-free views: not a kernel of their own
        sig = signature(row)
        found = self.blocks.get(sig)
        if found is None:
            found = self._predict(sig, row)
            self.blocks[sig] = found
            self.rows[sig] = row
        return found

    def _predict(self, sig: str, row: LayerCost) -> Block:
        from dscalc.measure.predict import Kernel

        self.calls += 1
        if row.kind in WEIGHTED:
            p = self.predictor.predict(row)
            model = self.predictor.model(row.dtype)
            if p.model == "roofline":
                model = "roofline"
        else:
            n = numel(row.output_shape)
            kind = _MEMORY_KIND[row.kind]
            # the work as the calibration's probes count it (`calibrate.memory_probe`): 2 per element for a norm,
            # one per window tap for a pool (every input element for a global pool), one per element otherwise
            work = {"batchnorm": 2 * n, "globalpool": numel(row.input_shape),
                    "pooling": math.prod(row.kernel) * n}.get(kind, n)
            p = self.predictor.kernel(Kernel(row.name, kind, work, row.bytes), row.dtype)
            model = "calibrated" if p is not None else None
        return Block(sig, row.kind, row.input_shape, row.output_shape, row.macs, row.bytes,
                     p.seconds if p is not None else None, p.bound if p is not None else None, model)

    def latency(self, rows: list[LayerCost]) -> float:
        """A network's predicted latency: its kernels' sum (memory-bound ops where calibrated), each plus its bytes
        at the calibration's network bandwidth and its overhead per kernel (`fusion.predict`'s rule for a whole
        model), else the sum times the in-network factor (kernels run slower inside a network than alone)."""
        cal = self.predictor.calibration(rows[0].dtype)
        bandwidth, overhead = cal.network if cal is not None else (None, None)
        total = 0.0
        for row in rows:
            b = self.block(row)
            if b is not None and b.predicted_s is not None:
                total += b.predicted_s + (b.bytes / bandwidth if bandwidth else 0.0) + (overhead or 0.0)
        networked = bool(bandwidth or overhead)
        return total if networked else total * (cal.in_network if cal is not None else 1.0)


# ------------------------------------------------------------------------------------------- the score

_OPS: dict[type, Callable[[float, float], float]] = {ast.Add: operator.add, ast.Sub: operator.sub,
                                                     ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY: dict[type, Callable[[float], float]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
FIELDS = ("params", "keras_params", "weights", "buffers", "macs", "flops", "activations", "training_memory",
          "latency")


@dataclass(frozen=True)
class Score:
    """A checked --score expression: arithmetic (+ - * /, parentheses, unary minus) on numbers and names."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str, known: Sequence[str]) -> Score:
        if len(text) > 500:
            raise BadInput("longer than 500 characters", "score")
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError:
            raise BadInput(f"not an arithmetic expression: {text[:60]!r}", "score") from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if node.id not in known:
                    raise BadInput(f"unknown name {node.id!r}; known: {', '.join(known)}", "score")
                names.add(node.id)
            elif isinstance(node, ast.Constant):
                if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                    raise BadInput(f"only numbers and names, got {node.value!r:.40}", "score")
            elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load, *_OPS, *_UNARY)):
                raise BadInput(f"only + - * / on numbers and names, got {type(node).__name__} in {text[:60]!r}",
                               "score")
        return cls(text, tree, frozenset(names))

    def __call__(self, values: dict[str, float]) -> float | None:
        """The score of one candidate; None when a name it uses has no value (no metric, not predicted) or the
        arithmetic is undefined (a division by zero)."""
        if any(values.get(n) is None for n in self.names):
            return None

        def ev(node: ast.AST) -> float:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant):
                assert isinstance(node.value, (int, float))
                return float(node.value)
            if isinstance(node, ast.Name):
                return float(values[node.id])
            if isinstance(node, ast.UnaryOp):
                return _UNARY[type(node.op)](ev(node.operand))
            assert isinstance(node, ast.BinOp)
            return _OPS[type(node.op)](ev(node.left), ev(node.right))

        try:
            out = ev(self.tree)
        except (ZeroDivisionError, OverflowError):
            return None
        return out if math.isfinite(out) else None


def read_metrics(path: Path) -> dict[str, dict[str, float]]:
    """--metrics FILE: a CSV with a column `id` (the candidate id, e.g. sep/sep/dw) and numeric columns."""
    try:
        if path.stat().st_size > 50_000_000:
            raise BadInput(f"{path}: larger than 50 MB", "metrics")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such file: {path}", "metrics") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read: {getattr(e, 'strerror', None) or 'not UTF-8 text'}", "metrics") from None
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise BadInput(f"{path}: needs a header with an 'id' column (the candidate id, e.g. sep/sep/dw)", "metrics")
    columns = [c for c in reader.fieldnames if c != "id"]
    bad = [c for c in columns if not c.isidentifier() or c in FIELDS]
    if bad:
        raise BadInput(f"{path}: column {bad[0]!r} is not a name a score can use (or shadows a cost field)",
                       "metrics")
    out: dict[str, dict[str, float]] = {}
    for n, row in enumerate(reader, 2):
        values: dict[str, float] = {}
        for c in columns:
            cell = (row.get(c) or "").strip()
            if cell == "":
                continue
            try:
                values[c] = float(cell)
            except ValueError:
                raise BadInput(f"{path} line {n}: {c} is not a number: {cell[:40]!r}", "metrics") from None
            if not math.isfinite(values[c]):
                raise BadInput(f"{path} line {n}: {c} is not finite", "metrics")
        out[(row.get("id") or "").strip()] = values
    return out


# ------------------------------------------------------------------------------------------ the front

def pareto(points: list[tuple[float, ...]]) -> list[bool]:
    """Which points no other point dominates (every axis <= and one <), all axes minimised."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front = [False] * len(points)
    kept: list[tuple[float, ...]] = []
    for i in order:  # sorted lexicographically: only an earlier point can dominate a later one
        p = points[i]
        if not any(all(a <= b for a, b in zip(q, p)) and q != p for q in kept):
            front[i] = True
            kept.append(p)
    return front


# ------------------------------------------------------------------------------------------- sampling

def picks(space: S.Space, budget: int | None, seed: int, objective: Callable[[tuple[int, ...]], Sequence[float]],
          progress: Callable[[], Any] | None = None) -> tuple[list[tuple[int, ...]], str]:
    """The candidates to cost: every one when the space is small enough (or the budget covers it), else `budget`
    distinct ones drawn by Optuna's NSGA-II sampler (seeded) steering towards the front of `objective`."""
    if budget is None:
        if space.size > S.EXHAUSTIVE_LIMIT:
            raise BadInput(f"{space.name} has {space.size:,} candidates, more than {S.EXHAUSTIVE_LIMIT:,} to "
                           "enumerate: give --budget N to sample N of them (pip install 'dscalc[search]')", "budget")
        budget = space.size
    if budget >= space.size:
        return list(space.ids()), "exhaustive"
    try:
        import optuna
    except ImportError:
        raise RuntimeFailure("sampling a large space needs optuna, which is not installed: "
                             "pip install 'dscalc[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = objective(next(space.ids()))
    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(4, budget // 4)))
    study = optuna.create_study(directions=["minimize"] * len(probe), sampler=sampler)
    seen: dict[tuple[int, ...], Sequence[float]] = {}
    rng = random.Random(seed)
    tries = 0
    while len(seen) < budget:
        trial = study.ask()
        pick = tuple(trial.suggest_int(c.name, 0, len(c.values) - 1) for c in space.choices)
        tries += 1
        if pick in seen and tries > 3 * budget:  # the sampler keeps proposing known ones: draw uniformly
            pick = tuple(rng.randrange(len(c.values)) for c in space.choices)
        if pick in seen:
            study.tell(trial, list(seen[pick]))
            continue
        seen[pick] = objective(pick)
        study.tell(trial, list(seen[pick]))
        if progress is not None:
            progress()
    return list(seen), f"sampled: {budget:,} of {space.size:,} (optuna {optuna.__version__} NSGA-II, seed {seed})"


# -------------------------------------------------------------------------------------------- the run

def run_search(space_name: str, *, axes: Sequence[str] | None = None, max_latency: float | None = None,
               max_params: int | None = None, max_macs: int | None = None, max_memory: int | None = None,
               score: str | None = None, metrics: Path | None = None, budget: int | None = None, seed: int = 0,
               predict: bool = False, settings: Any = None, device: str = "cpu", batch: int = 1,
               dtype: str = "float32", optimizer: str = "adam", predictor: Any = None,
               progress: Callable[[], Any] | None = None) -> SearchResult:
    """Search a space: cost every candidate (or a sample), predict (with `predict` or timing settings), constrain,
    mark the front over `axes`, rank, and with timing `settings` measure the front. `predictor` (a
    `measure.predictor.Predictor`) reuses one already loaded; by default the device's is loaded (its ceilings
    measured first where none are cached)."""
    space = S.load(space_name)
    table = read_metrics(metrics) if metrics is not None else {}
    known = list(FIELDS) + sorted({k for v in table.values() for k in v})
    checked = Score.parse(score, known) if score is not None else None
    if checked is None and metrics is not None:
        raise BadInput("the metrics are used by --score: give --score EXPR", "metrics")
    predicting = predict or settings is not None or max_latency is not None or \
        (axes is not None and "latency" in axes) or (checked is not None and "latency" in checked.names)
    if axes is None:
        axes = ("latency", "params") if predicting else ("macs", "params")
    axes = tuple(axes)
    for a in axes:
        if a not in AXES:
            raise BadInput(f"unknown axis {a!r}; known: {', '.join(AXES)}", "axes")
    if len(set(axes)) != len(axes) or not axes:
        raise BadInput("name each axis once", "axes")
    if "score" in axes and checked is None:
        raise BadInput("the score axis needs --score EXPR", "axes")
    if budget is not None and budget < 1:
        raise BadInput(f"must be at least 1, got {budget}", "budget")

    cache = None
    if predicting:
        if predictor is None:
            from dscalc.measure.predictor import predictor_for

            predictor = predictor_for(settings, device)
        cache = BlockCache(predictor)

    costed: dict[tuple[int, ...], tuple[S.Candidate, float | None]] = {}

    def one(pick: tuple[int, ...]) -> tuple[S.Candidate, float | None]:
        if pick not in costed:
            cand = S.cost(space, pick, batch=batch, dtype=dtype, optimizer=optimizer)
            costed[pick] = (cand, cache.latency(cand.rows) if cache is not None else None)
        return costed[pick]

    def values(pick: tuple[int, ...]) -> dict[str, Any]:
        cand, lat = one(pick)
        return {**cand.fields(), "latency": lat, **table.get(cand.id, {})}

    def objective(pick: tuple[int, ...]) -> list[float]:
        v = values(pick)
        if checked is not None:
            v["score"] = checked(v)
        return [_inf(v[a]) for a in axes]

    chosen, method = picks(space, budget, seed, objective, progress)
    if method == "exhaustive":
        for pick in chosen:
            one(pick)
            if progress is not None:
                progress()

    limits = {"latency": max_latency, "params": max_params, "macs": max_macs, "training_memory": max_memory}
    results: list[Result] = []
    for pick in chosen:
        cand, lat = one(pick)
        v = values(pick)
        s = checked(v) if checked is not None else None
        violates = tuple(k for k, lim in limits.items() if lim is not None and v[k] is not None and v[k] > lim)
        results.append(Result(cand, lat, score=s, metrics=table.get(cand.id, {}), violates=violates))
    notes: list[str] = []
    unknown_ids = set(table) - {r.candidate.id for r in results}
    if unknown_ids:
        notes.append(f"--metrics: {len(unknown_ids)} id(s) not among the candidates searched, e.g. "
                     f"{sorted(unknown_ids)[0]!r}")
    if checked is not None and any(r.score is None for r in results):
        notes.append(f"{sum(r.score is None for r in results)} candidate(s) have no score (a metric missing from "
                     "--metrics, or the expression undefined)")

    # the front: feasible candidates with a value on every axis
    eligible = [i for i, r in enumerate(results) if r.feasible and all(r.axis(a) is not None for a in axes)]
    marks = pareto([tuple(_inf(results[i].axis(a)) for a in axes) for i in eligible])
    on_front = {i for i, m in zip(eligible, marks) if m}
    results = [Result(r.candidate, r.latency_s, None, r.score, r.metrics, r.violates, i in on_front)
               for i, r in enumerate(results)]

    def key(r: Result) -> tuple[Any, ...]:
        primary = r.score if checked is not None else r.axis(axes[0])
        return (not r.feasible, primary is None, _inf(primary), *(_inf(r.axis(a)) for a in axes), r.candidate.index)

    ranked = sorted(results, key=key)
    ranked = [Result(r.candidate, r.latency_s, None, r.score, r.metrics, r.violates, r.front, n)
              for n, r in enumerate(ranked, 1)]
    reorders: list[dict[str, Any]] = []
    if settings is not None:
        ranked, reorders = _measure_front(ranked, settings, cache)
    constraints = {k: v for k, v in limits.items() if v is not None}
    pred_text = None
    dev = None
    if cache is not None:
        pred_text = cache.predictor.describe(dtype)
        dev = cache.predictor.name
    return SearchResult(space, method, tuple(ranked), axes, constraints, score, cache.blocks if cache else {},
                        cache.calls if cache else 0, pred_text, dev, batch, dtype, optimizer, tuple(reorders),
                        tuple(notes))


def _inf(v: float | None) -> float:
    return math.inf if v is None else float(v)


# ----------------------------------------------------------------------------------------------- timing

def _measure_front(ranked: list[Result], settings: Any, cache: BlockCache | None
                   ) -> tuple[list[Result], list[dict[str, Any]]]:
    """Time every candidate on the front as one network (torch eager on the settings' device) and each block of the
    lookup table on its own; the pairs of front candidates whose measured order differs from the predicted one
    are timed again in interleaved blocks (`measure.timer.measure_pair`) and listed when the pairing confirms it
    ('reordered') or cannot tell ('too close to call')."""
    from dscalc.measure.modules import time_layer, time_module
    from dscalc.measure.settings import configured

    out = list(ranked)
    with configured(settings):
        if cache is not None:
            for sig, row in list(cache.rows.items()):
                if row.kind in WEIGHTED:
                    t = time_layer(row, settings)
                    cache.blocks[sig].measured[settings.runtime] = t.to_dict()
        for n, r in enumerate(out):
            if not r.front:
                continue
            c = r.candidate
            timing = time_module(network_module(c.rows, c.sources), [c.rows[0].input_shape], settings, c.id,
                                 own=True)
            out[n] = Result(c, r.latency_s, timing, r.score, r.metrics, r.violates, r.front, r.rank)
        front = [r for r in out if r.front and r.latency_s is not None and r.measured is not None
                 and r.measured.median]
        reorders: list[dict[str, Any]] = []
        for i, a in enumerate(front):
            for b in front[i + 1:]:
                first, second = (a, b) if a.latency_s <= b.latency_s else (b, a)  # type: ignore[operator]
                if first.measured.median > second.measured.median and len(reorders) < MAX_PAIRED:
                    found = _paired(first, second, settings)
                    if found is not None:
                        reorders.append(found)
    return out, reorders


#: the most pairs of front candidates that --time checks in interleaved blocks
MAX_PAIRED = 10


def _paired(first: Result, second: Result, settings: Any) -> dict[str, Any] | None:
    """Two front candidates whose separate timings reverse the predicted order (`first` predicted faster), timed
    again in interleaved blocks: 'reordered' when the paired ratio's interquartile range lies above 1, 'too close
    to call' when it straddles 1; None when the pairing shows the predicted order after all."""
    from dscalc.measure.modules import prepare
    from dscalc.measure.timer import measure_pair

    built = [prepare(network_module(r.candidate.rows, r.candidate.sources), [r.candidate.rows[0].input_shape],
                     settings) for r in (first, second)]
    try:
        ta, tb, ratio = measure_pair(built[0].call, built[1].call, settings, (first.candidate.id,
                                                                              second.candidate.id))
    finally:
        for one in built:
            one.close()
    if ratio is None or ratio.q3 < 1:
        return None
    return {"predicted_faster": first.candidate.id, "measured_faster": second.candidate.id,
            "predicted_s": [first.latency_s, second.latency_s], "measured_s": [ta.median, tb.median],
            "paired_ratio": ratio.to_dict(), "verdict": "reordered" if ratio.decided else "too close to call"}


def network_module(rows: list[LayerCost], sources: list[tuple[int, ...]]) -> Any:
    """A torch module that runs a costed network's rows along its data flow (random weights, eval mode)."""
    from torch import nn

    from dscalc.measure.modules import module_for

    def layer(row: LayerCost) -> Any:
        dims = len(row.input_shape) - 2
        if row.kind in WEIGHTED:
            return module_for(row)
        if row.kind == "bn":
            return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[max(dims, 1) - 1](row.input_shape[1])
        if row.kind in ("maxpool", "avgpool"):
            pool = getattr(nn, f"{'Max' if row.kind == 'maxpool' else 'Avg'}Pool{dims}d")(row.kernel, row.stride)
            if all(a == b == 0 for a, b in row.padding):
                return pool
            flat = tuple(p for pair in reversed(row.padding) for p in pair)
            return nn.Sequential(getattr(nn, f"ZeroPad{dims}d")(flat), pool)
        if row.kind == "gap":
            return nn.Sequential(getattr(nn, f"AdaptiveAvgPool{dims}d")(1), nn.Flatten())
        simple = {"relu": nn.ReLU, "relu6": nn.ReLU6, "activation": nn.ReLU, "sigmoid": nn.Sigmoid,
                  "swish": nn.SiLU, "hardswish": nn.Hardswish, "dropout": nn.Dropout, "flatten": nn.Flatten}
        if row.kind == "softmax":
            return nn.Softmax(dim=1)
        if row.kind in simple:
            return simple[row.kind]()
        return None  # add, concat: done in forward

    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([layer(r) or nn.Identity() for r in rows])
            self.kinds = [r.kind for r in rows]
            self.sources = sources

        def forward(self, x: Any) -> Any:
            import torch

            outs: list[Any] = []
            for mod, kind, srcs in zip(self.layers, self.kinds, self.sources):
                ins = [x if s < 0 else outs[s] for s in srcs]
                if kind == "add":
                    y = ins[0]
                    for t in ins[1:]:
                        y = y + t
                elif kind == "concat":
                    y = torch.cat(ins, dim=1)
                else:
                    y = mod(ins[0])
                outs.append(y)
            return outs[-1]

    return Network().eval()

"""The studies: typed, frozen records of everything a command found. A study is built once by its function in
`dscalc.study` and never edited after; `dscalc.report` draws it. Runtimes and training are fields of the one
study: `runs` holds one `Run` per runtime measured (one for the default), `training` the training step.

Every study answers the same questions in Python: `.rows` (records with .name, .kind, .params, .macs, ...),
`.totals` (a `Totals` with every field present, None where it does not apply), `.to_dict()` (the CLI's
`--format json`), `.to_pandas()`, and it draws itself in a terminal (`__rich__`) and in Jupyter
(`_repr_html_`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dscalc.cost.network import Spec as NetworkSpec
    from dscalc.cost.records import LayerCost, SeparableComparison
    from dscalc.cost.spec import LayerSpec
    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.latency import Latency, PairLatency
    from dscalc.measure.predict import Calibration
    from dscalc.measure.sweep import SweepRow
    from dscalc.measure.timer import Timing
    from dscalc.study.compare import CompareTraining, Side
    from dscalc.study.layer import LayerTraining
    from dscalc.study.model import ModelTrainingStudy
    from dscalc.study.network import NetworkTraining
    from dscalc.study.sweep import SweepTraining
    from dscalc.trace.records import ProfileResult


# ------------------------------------------------------------------------------------------------- parts

@dataclass(frozen=True)
class Totals:
    """A study's totals, every field present (None where it does not apply to what was counted)."""

    macs: int | None = None
    flops: int | None = None
    params: int | None = None
    weights: int | None = None
    buffers: int | None = None
    bytes: int | None = None
    bias_adds: int | None = None
    int8_macs: int | None = None
    separable_macs: int | None = None
    trainable_params: int | None = None
    non_trainable_params: int | None = None
    total_params: int | None = None

    @classmethod
    def of(cls, values: dict[str, Any]) -> Totals:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class Memory:
    """Inference memory of a traced model in bytes, every field present (None where not counted)."""

    weights: int | None = None
    buffers: int | None = None
    inputs: int | None = None
    activations: int | None = None
    peak_activations: int | None = None
    total: int | None = None

    @classmethod
    def of(cls, values: dict[str, Any] | None) -> Memory:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


@dataclass(frozen=True)
class Run:
    """One runtime's measurements (or, unmeasured, the predictions) of a study: its conditions, its latency
    rows, the layer's separable pair, and a model's whole forward."""

    context: dict[str, Any]  # device, dtype, threads, ... (and the runtime, where several were asked for)
    rows: tuple[Latency, ...]
    pair: PairLatency | None = None
    end_to_end: Timing | None = None
    measured: bool = True  # False: predicted only (--predict, or compare without --time)
    whole: float | None = None  # a model's predicted end-to-end latency (None without a calibration)

    @property
    def runtime(self) -> str | None:
        return self.context.get("runtime")

    @property
    def predicted_s(self) -> float | None:
        return sum(r.predicted.seconds for r in self.rows if r.predicted) if self.rows else None

    @property
    def measured_s(self) -> float | None:
        ts = [r.timing.median for r in self.rows if r.timing is not None]
        return sum(t for t in ts if t) if ts and all(ts) else None


# ----------------------------------------------------------------------------------------------- studies

class Study:
    """What every study answers (the drawing and the JSON come from `dscalc.report`, imported when asked)."""

    command = ""

    def report(self) -> Any:
        from dscalc.report.draw import draw

        return draw(self)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's `--format json` document for the same input (schema_version included)."""
        import json

        from dscalc.report.render import Format, render

        data: dict[str, Any] = json.loads(render(self.report(), Format.json))
        return data

    @property
    def rows(self) -> list[Any]:
        return []

    @property
    def totals(self) -> Totals:
        return Totals()

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (one column per field; nested ones dotted, as in the CSV)."""
        try:
            import pandas as pd
        except ImportError:
            from dscalc.errors import RuntimeFailure

            raise RuntimeFailure("to_pandas() needs pandas, which is not installed: pip install pandas") from None
        from dscalc.report.render import flatten

        return pd.DataFrame([flatten(r) for r in self.report().records])

    def __rich__(self) -> Any:
        from rich.text import Text

        from dscalc.report.render import Format, render

        return Text(render(self.report(), Format.table))

    def _repr_html_(self) -> str:
        from dscalc.report.render import html

        return html(self.report())

    def __repr__(self) -> str:
        t = self.totals
        if t.macs is None or t.params is None:
            return f"{type(self).__name__}({len(self.rows)} rows)"
        return f"{type(self).__name__}(macs={t.macs:,}, params={t.params:,})"

    def __str__(self) -> str:
        from dscalc.report.render import Format, render

        return render(self.report(), Format.table, width=100)


@dataclass(frozen=True, repr=False)
class LayerStudy(Study):
    """One layer and, where one exists, its depthwise-separable pair; predicted/measured; trained."""

    spec: LayerSpec
    layer: LayerCost
    comparison: SeparableComparison | None
    assumptions: tuple[str, ...]
    command: str = "layer"
    runs: tuple[Run, ...] = ()  # one per runtime; () when neither predicted nor measured
    by_runtime: bool = False  # --runtime named: drawn side by side
    training: LayerTraining | None = None

    @property
    def rows(self) -> list[Any]:
        c = self.comparison
        return [self.layer] if c is None else [self.layer, c.depthwise, c.pointwise]

    @property
    def totals(self) -> Totals:
        r = self.layer
        return Totals(macs=r.macs, flops=r.flops, params=r.params, weights=r.weights, bytes=r.bytes,
                      separable_macs=self.comparison.macs if self.comparison else None)

    def __repr__(self) -> str:
        return f"LayerStudy({self.layer.kind}, macs={self.layer.macs:,}, params={self.layer.params:,})"


@dataclass(frozen=True, repr=False)
class NetworkListStudy(Study):
    """`dscalc network --list`: the built-in networks."""

    specs: tuple[NetworkSpec, ...]
    command: str = "network"

    @property
    def rows(self) -> list[Any]:
        return list(self.specs)


@dataclass(frozen=True, repr=False)
class NetworkStudy(Study):
    """A declared network layer by layer; every weighted layer predicted/measured per runtime; trained."""

    meta: dict[str, Any]  # network, source, alpha, resolution, as, batch, dtype
    layers: tuple[LayerCost, ...]
    all_layers: bool = False
    runs: tuple[Run, ...] = ()
    by_runtime: bool = False
    training: NetworkTraining | None = None
    command: str = "network"

    @property
    def rows(self) -> list[Any]:
        return list(self.layers)

    @property
    def totals(self) -> Totals:
        from dscalc.cost.totals import totals

        return Totals.of(totals(list(self.layers)))

    def __repr__(self) -> str:
        t = self.totals
        return f"NetworkStudy({self.meta['network']}, macs={t.macs:,}, params={t.params:,})"


@dataclass(frozen=True, repr=False)
class ModelStudy(Study):
    """A real model traced per module; its layers predicted/measured per runtime; its training step."""

    target: str
    result: ProfileResult
    depth: int | None = None
    format: str | None = None  # for the formats counted from their graph (onnx, keras)
    runs: tuple[Run, ...] = ()
    by_runtime: bool = False
    training: ModelTrainingStudy | None = None
    assumed: str = ""  # the input a hub model documents, taken for a run without one: the line that says so
    command: str = "profile"

    @property
    def rows(self) -> list[Any]:
        return list(self.result.rows)

    @property
    def totals(self) -> Totals:
        return Totals.of(self.result.totals)

    @property
    def memory(self) -> Memory:
        return Memory.of(self.result.memory)

    def __repr__(self) -> str:
        t = self.totals
        return f"ModelStudy({self.target}, macs={t.macs:,}, params={t.params:,})"


@dataclass(frozen=True, repr=False)
class CompareStudy(Study):
    """The original beside its variant: a layer and its separable pair (`layer`), a network and its --as rewrite,
    or a model and its separable copy (`original`/`variant`)."""

    of: str  # "layer", "network" or "model"
    layer: LayerStudy | None = None
    original: Side | None = None
    variant: Side | None = None
    target: str = ""  # the network's or the model's name
    as_: str | None = None  # networks
    replaced: int | None = None  # models: convs replaced
    device: str = ""  # the predictor's device name (networks)
    contexts: tuple[dict[str, Any], ...] = ()  # one per runtime, where several were named
    training: CompareTraining | None = None
    assumed: str = ""  # a hub model's documented input, taken for a run without one: the line that says so
    command: str = "compare"

    @property
    def by_runtime(self) -> bool:
        return bool(self.contexts)

    @property
    def rows(self) -> list[Any]:
        if self.layer is not None:
            return self.layer.rows
        return [self.original, self.variant]

    @property
    def totals(self) -> Totals:
        if self.layer is not None:
            return self.layer.totals
        assert self.original is not None
        return Totals.of(self.original.totals)


@dataclass(frozen=True, repr=False)
class SweepStudy(Study):
    """A grid of standard-vs-separable configs: MAC, predicted and measured (per runtime) speedups, verdicts."""

    configs: tuple[SweepRow, ...]
    context: dict[str, Any]
    measured: bool
    runtimes: tuple[str, ...] = ()  # the runtimes named (side by side); () for the default
    training: SweepTraining | None = None
    command: str = "sweep"

    @property
    def rows(self) -> list[Any]:
        return list(self.configs)


@dataclass(frozen=True, repr=False)
class DeviceStudy(Study):
    """This device's measured ceilings (and each runtime's matmul peak and call floor), or its calibration."""

    ceilings: Ceilings | None = None
    cached: bool = False
    runtimes: tuple[tuple[dict[str, Any], Timing, Timing], ...] = ()  # context, matmul, floor per runtime
    matmul_n: int = 0
    calibration: Calibration | None = None
    command: str = "device"

    @property
    def rows(self) -> list[Any]:
        return [self.ceilings or self.calibration]


STUDIES = (LayerStudy, NetworkListStudy, NetworkStudy, ModelStudy, CompareStudy, SweepStudy, DeviceStudy)
__all__ = [c.__name__ for c in STUDIES] + ["Run", "Totals", "Memory"]

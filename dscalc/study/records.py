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
    from dscalc.measure.latency import Latency, PairLatency
    from dscalc.measure.timer import Timing


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



"""The sweep as a picture (matplotlib, the `plot` extra): speedup of separable against channels, one line per
batch / dtype / memory format (and runtime, when several were measured), with the MAC ratio for reference."""

from __future__ import annotations

from typing import Any

from dscalc.errors import RuntimeFailure, missing
from dscalc.measure.sweep import SweepRow


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend; a missing matplotlib is a missing extra (one line, exit 1)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing("matplotlib", "plot", "--plot") from None
    return plt


def save(fig: Any, path: str) -> None:
    """Write the figure to `path` and close it; a file that cannot be written is one line, exit 1 (as --output)."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:
        raise RuntimeFailure(f"--plot: cannot write {path}: {e}") from None
    finally:
        plt.close(fig)


def sweep_plot(rows: list[SweepRow], path: str, device: str = "") -> None:
    """Measured speedup (with its spread and the prediction) or, unmeasured, predicted speedup."""
    plt = pyplot()
    measured = any(r.pair.measured_speedup is not None for r in rows)
    several = len({r.runtime for r in rows}) > 1  # one line per runtime, each with its spread
    fig, ax = plt.subplots(figsize=(7.5, 5))
    drawn: set[tuple[object, ...]] = set()
    for key in sorted({(r.batch, r.dtype, r.channels_last, r.k, r.size, r.runtime or "") for r in rows}):
        sel = [r for r in rows if (r.batch, r.dtype, r.channels_last, r.k, r.size, r.runtime or "") == key]
        label = f"{key[3]}x{key[3]} at {key[4]}², batch {key[0]}, {key[1]}" + (", channels-last" if key[2] else "") \
            + (f", {key[5]}" if several else "")
        xs = [r.cin for r in sel]
        predicted = [_nan(r.pair.predicted_speedup) for r in sel]
        if measured:
            ys = [_nan(r.pair.measured_speedup) for r in sel]
            low, high = zip(*[_spread(r) for r in sel])
            line = ax.plot(xs, ys, marker="o", label=f"{label}: measured")[0]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
            if key[:5] not in drawn:  # the prediction (eager) is drawn once
                drawn.add(key[:5])
                ax.plot(xs, predicted, ls="--", marker=".", color=line.get_color(), alpha=0.7,
                        label=f"{label.rpartition(', ')[0] if several else label}: predicted")
        else:
            ax.plot(xs, predicted, ls="--", marker="o", label=f"{label}: predicted")
    theory = sorted({(r.cin, r.pair.mac_speedup) for r in rows})
    ax.plot([c for c, _ in theory], [m for _, m in theory], color="grey", ls=":", label="MAC ratio (theory)")
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("channels (cin)")
    ax.set_ylabel("speedup of separable (standard / separable time)")
    where = f" on {device}" if device else ""
    ax.set_title(("Measured: where depthwise-separable wins" if measured
                  else "Predicted (not measured): where depthwise-separable would win") + where,
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def _spread(row: SweepRow) -> tuple[float, float]:
    """The speedup's range from the two timings' quartiles: slowest standard / fastest separable and back."""
    std, sep = row.pair.original.timing, row.pair.pair.timing
    gain = row.pair.measured_speedup or 0.0
    if std is None or sep is None or None in (std.q1, std.q3, sep.q1, sep.q3) or not sep.q1 or not sep.q3:
        return gain, gain
    return std.q1 / sep.q3, std.q3 / sep.q1  # type: ignore[operator]


def _nan(value: float | None) -> float:
    """A missing figure (a failed row) as a gap in the line."""
    return float("nan") if value is None else value

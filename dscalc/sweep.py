"""`dscalc sweep`: a grid of layer configs, tabulating where depthwise-separable actually wins -
MAC speedup (theory), roofline speedup (prediction) and measured speedup, side by side."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from dscalc.errors import BadInput


def parse_values(text: str, option: str) -> list[int]:
    """'32,64,128' | '32:512:x2' (geometric) | '1:8' or '1:8:2' (arithmetic), inclusive."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bits = part.split(":")
                if len(bits) not in (2, 3):
                    raise ValueError
                lo, hi = int(bits[0]), int(bits[1])
                step = bits[2] if len(bits) == 3 else "1"
                if step.startswith("x"):
                    factor = int(step[1:])
                    if factor < 2 or lo < 1:
                        raise ValueError
                    v = lo
                    while v <= hi:
                        values.append(v)
                        v *= factor
                else:
                    if int(step) < 1:
                        raise ValueError
                    values += list(range(lo, hi + 1, int(step)))
            else:
                values.append(int(part))
        except ValueError:
            raise BadInput(f"expected a list like 32,64 or a range like 32:512:x2 or 1:8:2, got {text!r}",
                           option) from None
    if not values or any(v < 1 for v in values):
        raise BadInput(f"every value must be a positive integer, got {text!r}", option)
    return values


@dataclass(frozen=True)
class SweepRow:
    cin: int
    cout: int
    k: int
    size: int
    batch: int
    dtype: str
    channels_last: bool
    pair: Any  # dscalc.compare.PairLatency

    def to_dict(self) -> dict[str, Any]:
        p = self.pair
        measured = p.measured_speedup
        return {"cin": self.cin, "cout": self.cout, "k": self.k, "size": self.size, "batch": self.batch,
                "dtype": self.dtype, "channels_last": self.channels_last,
                "macs": p.original.macs, "separable_macs": p.pair.macs,
                "mac_speedup": p.mac_speedup, "predicted_speedup": p.predicted_speedup,
                "measured_speedup": measured,
                "separable_wins": None if measured is None else measured > 1,
                "prediction_right": None if measured is None or p.predicted_speedup is None
                else (measured > 1) == (p.predicted_speedup > 1),
                "standard_s": p.original.timing.median if p.original.timing else None,
                "separable_s": p.pair.timing.median if p.pair.timing else None,
                "error": (p.original.timing.error or p.pair.timing.error) if p.original.timing else None}


def run(cins: list[int], couts: list[int] | None, ks: list[int], sizes: list[int], batches: list[int],
        dtypes: list[str], formats: list[bool], settings: Any, ceilings: Any, progress: Any = None) -> list[SweepRow]:
    """Every combination (cout follows cin when not given), predicted and, with settings, measured."""
    from dataclasses import replace

    from dscalc import timing
    from dscalc.compare import pair_latency
    from dscalc.layers import conv, separable_of

    grid = [(ci, co, k, s, b, d, cl) for ci in cins for co in (couts or [ci]) for k, s, b, d, cl
            in itertools.product(ks, sizes, batches, dtypes, formats)]
    rows = []
    for ci, cout, k, s, b, d, cl in grid:
        layer = conv(ci, cout, k, s, batch=b, padding="same", dtype=d)
        pair = separable_of(layer)
        if pair is None:
            raise BadInput("a 1x1 kernel has no separable counterpart", "k")
        if settings is None:
            rows.append(SweepRow(ci, cout, k, s, b, d, cl, pair_latency(pair, ceilings, None)))
        else:
            here = replace(settings, dtype=d, channels_last=cl)
            with timing.configured(here):
                rows.append(SweepRow(ci, cout, k, s, b, d, cl, pair_latency(pair, ceilings, here)))
        if progress is not None:
            progress()
    return rows


def report(rows: list[SweepRow], context: dict[str, Any]) -> Any:
    from dscalc.render import Column, Grid, Report
    from dscalc.units import shape, speedup

    grid = Grid(title=f"separable vs standard on {context['device']}",
                columns=[Column("cin->cout", "left"), Column("k"), Column("size"), Column("batch"),
                         Column("dtype", "left"), Column("MACs"), Column("predicted"), Column("measured"),
                         Column("winner", "left")],
                caption="speedup = standard time / separable time (> 1: separable is faster); MACs: theory; "
                        "predicted: roofline from the device's ceilings")
    right = measured_rows = 0
    for r in rows:
        d = r.to_dict()
        if d["measured_speedup"] is None:
            winner = d["error"] or "-"
        else:
            measured_rows += 1
            right += bool(d["prediction_right"])
            winner = ("separable" if d["separable_wins"] else "standard") + ("" if d["prediction_right"] else " (!)")
        grid.add(f"{r.cin}->{r.cout}", str(r.k), shape((r.size, r.size)), str(r.batch),
                 r.dtype + (" cl" if r.channels_last else ""), speedup(d["mac_speedup"]),
                 speedup(d["predicted_speedup"]), speedup(d["measured_speedup"]), winner)
    if measured_rows:
        grid.notes.append(f"the roofline picked the winner in {right} of {measured_rows} configs "
                          f"((!) marks a miss); MACs alone always pick separable")
    records = [r.to_dict() for r in rows]
    data = {"command": "sweep", **context, "rows": records,
            "prediction_right": right if measured_rows else None, "measured": measured_rows}
    return Report(data=data, records=records, grids=[grid])


def plot(rows: list[SweepRow], path: str) -> None:
    """Measured (or predicted) speedup against the MAC speedup, one marker per config (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInput("needs matplotlib: pip install 'dscalc[plot]'", "plot") from None
    fig, ax = plt.subplots(figsize=(7, 5))
    for key in sorted({(r.batch, r.dtype, r.channels_last) for r in rows}):
        sel = [r.to_dict() for r in rows if (r.batch, r.dtype, r.channels_last) == key]
        ys = [d["measured_speedup"] or d["predicted_speedup"] for d in sel]
        ax.plot([d["cin"] for d in sel], ys, marker="o",
                label=f"batch {key[0]}, {key[1]}" + (", channels-last" if key[2] else ""))
    theory = sorted({(r.cin, r.to_dict()["mac_speedup"]) for r in rows})
    ax.plot([c for c, _ in theory], [m for _, m in theory], color="grey", ls=":", label="MAC ratio (theory)")
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("channels (cin)")
    ax.set_ylabel("speedup of separable (standard / separable time)")
    ax.set_title("Where depthwise-separable actually wins")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot write {path}: {e}", "plot") from None
    finally:
        plt.close(fig)

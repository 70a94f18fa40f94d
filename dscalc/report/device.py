"""`dscalc device`: this machine's measured ceilings, with when, how and under what load they were measured."""

from __future__ import annotations

import time
from pathlib import Path

from dscalc.measure.ceilings import Ceilings, age, cache_path, get_ceilings
from dscalc.report.model import Column, Grid, Report, name


def table(c: Ceilings, cached: bool) -> Report:
    grid = Grid(title=f"{c.device}: {c.name}", columns=[name("ceiling"), Column("measured")],
                caption=("cached in " if cached else "measured now; cached in ") + _shown(cache_path())
                + " (--refresh to measure again)")
    for dtype, flops in c.peak_flops.items():
        grid.add(f"peak matmul, {dtype}", f"{flops / 1e9:,.1f} GFLOP/s")
    grid.add("memory bandwidth (copy: read + write)", f"{c.bandwidth / 1e9:,.1f} GB/s")
    grid.add("launch / dispatch floor (1-element add)", f"{c.launch * 1e6:,.1f} µs")
    ridge = max(c.peak_flops.values()) / c.bandwidth if c.peak_flops else 0.0
    grid.notes.append(f"ridge point: {ridge:.1f} FLOP/B - layers below it are memory-bound here")
    load = "unknown load" if c.load is None else f"load {c.load:.2f} per CPU"
    when = age(time.time() - c.measured_at) if c.measured_at else "at an unknown time"
    grid.notes.append(f"measured {when} with torch {c.torch or '?'} at {c.threads} thread"
                      f"{'s' if c.threads != 1 else ''}, {load}"
                      + (" - heavy: it will be measured again next time" if c.under_load else ""))
    data = {"command": "device", **c.to_dict(), "cached": cached, "cache": str(cache_path()),
            "age_s": time.time() - c.measured_at if c.measured_at else None, "under_load": c.under_load}
    return Report("device", data, [{"name": c.name, "kind": "device", **c.to_dict()}], [grid])


def _shown(path: Path) -> str:
    """A path under the home directory as ~/...: shorter, and the same for every user."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def build(device: str, *, refresh: bool = False, threads: int | None = None) -> Report:
    return table(*get_ceilings(device, refresh=refresh, threads=threads))

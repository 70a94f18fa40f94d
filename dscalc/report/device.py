"""`dscalc device`, drawn: this machine's measured ceilings, with when, how and under what load they were measured."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from dscalc.measure.ceilings import age, cache_path
from dscalc.report.fmt import seconds
from dscalc.report.model import Column, Grid, Report, name

if TYPE_CHECKING:
    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.predict import Calibration
    from dscalc.study.device import DeviceStudy


def table(c: Ceilings, cached: bool) -> Report:
    grid = Grid(title=f"{c.device}: {c.name}", columns=[name("ceiling"), Column("measured")],
                caption=("measured now; not cached (the cache could not be written)" if c.extra.get("not_cached")
                         else ("cached in " if cached else "measured now; cached in ") + _shown(cache_path())
                         + " (--refresh to measure again)"))
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
                      + (" - heavy: it will be measured again next time" if c.under_load else "")
                      + (f"; shortened by DSCALC_MAX_RUN_TIME={c.max_run_time:g} s (kept apart from full "
                         "measurements)" if c.max_run_time is not None else ""))
    data = {"command": "device", **c.to_dict(), "cached": cached,
            "cache": None if c.extra.get("not_cached") else str(cache_path()),
            "age_s": time.time() - c.measured_at if c.measured_at else None, "under_load": c.under_load}
    return Report("device", data, [{"name": c.name, "kind": "device", **c.to_dict()}], [grid])


def _shown(path: Path) -> str:
    """A path under the home directory as ~/...: shorter, and the same for every user."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def draw(study: DeviceStudy) -> Report:
    if study.calibration is not None:
        return calibration(study.calibration, study.cached)
    assert study.ceilings is not None
    report = table(study.ceilings, study.cached)
    if study.runtimes:
        from dscalc.report import runtimes

        runtimes.add_device(report, study)
    return report


def calibration(cal: Calibration, cached: bool) -> Report:
    """`dscalc device --calibrate`: the fitted model of each kernel kind - its fixed cost, effective rates, how
    well it fits the kernels it was fitted on - and what was measured when."""
    grid = Grid(title=f"latency model: {cal.name}, {cal.dtype}" + (", channels-last" if cal.channels_last else "")
                + (f", {cal.runtime}" if cal.runtime != "eager" else ""),
                columns=[name("kernel kind"), Column("fixed cost"), Column("compute"), Column("memory"),
                         Column("kernels"), Column("fit error")],
                caption="t = fixed cost + FLOPs / compute rate + bytes / memory rate, fitted per kind by "
                        "non-negative least squares on relative error; fit error: median |predicted/measured - 1| "
                        "over the kernels it was fitted on")
    for kind, m in cal.models.items():
        grid.add(kind, seconds(m.fixed) if m.fixed else "0",
                 f"{1 / m.per_flop / 1e9:,.1f} GFLOP/s" if m.per_flop else "-",
                 f"{1 / m.per_byte / 1e9:,.1f} GB/s" if m.per_byte else "-", str(m.samples), f"{100 * m.error:.0f}%")
    load = "unknown load" if cal.load is None else f"load {cal.load:.2f} per CPU"
    when = age(time.time() - cal.measured_at)
    grid.notes.append(f"{'cached: ' if cached else ''}measured {when} in {cal.seconds:.0f} s with torch {cal.torch} at "
                      f"{cal.threads} thread{'s' if cal.threads != 1 else ''}, {load}; matmul peak "
                      + (f"{cal.peak_flops / 1e9:,.1f} GFLOP/s" if cal.peak_flops else "unknown")
                      + (f"; shortened by DSCALC_MAX_RUN_TIME={cal.max_run_time:g} s (cached apart from full "
                         "calibrations)" if cal.max_run_time is not None else ""))
    if cal.network_bandwidth or cal.network_overhead:
        grid.notes.append(f"inside a network kernels took {cal.in_network:.2f}x their time alone (reference chains "
                          f"timed whole): a whole model's kernels are each predicted alone plus {cal.network_terms()}")
    else:
        grid.notes.append(f"inside a network kernels took {cal.in_network:.2f}x their time alone (reference chains "
                          "timed whole); a whole model's prediction is scaled by it")
    if cal.learned:
        grid.notes.append("learned models (trees over the line, from each kernel's shape): out-of-bag median error "
                          + ", ".join(f"{kind} {100 * f.error:.0f}%" for kind, f in cal.learned.items()))
    if cal.budget is not None:
        grid.notes.append(f"{len(cal.samples)} kernels measured, {cal.adaptive} of them by adaptive sampling, "
                          f"within a budget of {cal.budget:g} s")
    # the report names what was fitted, not the fitted trees and every sample (they stay in the cache)
    summary = cal.to_dict()
    if cal.learned:
        summary["learned"] = {kind: {"kind": kind, "trees": len(f.trees), "samples": f.samples,
                                     "median_error": f.error} for kind, f in cal.learned.items()}
    if cal.samples:
        summary["samples"] = len(cal.samples)
    data = {"command": "device", "calibration": summary, "cached": cached}
    records = [{"name": kind, "kind": "kernel model", **m.to_dict()} for kind, m in cal.models.items()]
    return Report("device", data, records, [grid])

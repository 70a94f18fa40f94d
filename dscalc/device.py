"""`dscalc device`: measure this machine's ceilings - peak matmul FLOP/s per dtype, copy bandwidth, the
launch/dispatch floor - and cache them per device in the user's cache directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dscalc.roofline import Ceilings

CACHE_VERSION = 1


def cache_path() -> Path:
    """$XDG_CACHE_HOME/dscalc/device.json (or ~/.cache/dscalc/device.json)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dscalc" / "device.json"


def _key(device: str, threads: int) -> str:
    from dscalc.timing import device_name

    return f"{device}:{device_name(device)}" + (f":{threads}t" if device == "cpu" else "")


def load_cached(device: str, threads: int) -> Ceilings | None:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return None
    entry = data.get(_key(device, threads)) if data.get("version") == CACHE_VERSION else None
    return Ceilings.from_dict(entry) if entry else None


def save(ceilings: Ceilings, threads: int) -> Path:
    path = cache_path()
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            data = {"version": CACHE_VERSION}
    except (OSError, ValueError):
        data = {"version": CACHE_VERSION}
    data[_key(ceilings.device, threads)] = ceilings.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    return path


def measure_ceilings(device: str, quick: bool = False) -> Ceilings:
    """Large matmuls (per dtype), a large copy, and a one-element add: each timed with torch.utils.benchmark."""
    import functools

    import torch

    from dscalc.timing import DTYPES, Settings, configured, device_name, measure

    settings = Settings(device=device, min_run_time=0.1 if quick else 0.3, max_run_time=1.0 if quick else 3.0)
    peaks: dict[str, float] = {}
    with configured(settings):
        for name, dtype in DTYPES.items():
            # CPUs without half-precision matmul units run fp16/bf16 ~100x slower: keep that probe small
            n = 4096 if device == "cuda" else (1024 if name == "float32" and not quick else 256)
            try:
                a = torch.randn(n, n, device=device, dtype=dtype)
                b = torch.randn(n, n, device=device, dtype=dtype)
            except RuntimeError:
                continue
            t = measure(functools.partial(torch.matmul, a, b), settings, f"matmul {name}")
            if t.median:
                peaks[name] = 2 * n**3 / t.median
        elements = (256 if device == "cuda" else (8 if quick else 32)) * 2**20
        src = torch.empty(elements, device=device, dtype=torch.float32)
        dst = torch.empty_like(src)
        t = measure(lambda: dst.copy_(src), settings, "copy")
        bandwidth = 2 * elements * 4 / t.median if t.median else float("nan")
        tiny = torch.zeros(1, device=device)
        t = measure(lambda: tiny.add_(1), settings, "launch")
        launch = t.median or float("nan")
        return Ceilings(device, device_name(device), peaks, bandwidth, launch)


def get_ceilings(device: str, refresh: bool = False, threads: int | None = None) -> tuple[Ceilings, bool]:
    """Cached ceilings of this device at this CPU thread count, measured (and cached) when missing or when
    asked to refresh."""
    import torch

    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        count = torch.get_num_threads()
        if not refresh:
            cached = load_cached(device, count)
            if cached is not None:
                return cached, True
        ceilings = measure_ceilings(device)
        save(ceilings, count)
        return ceilings, False
    finally:
        torch.set_num_threads(saved)


def ceilings_report(c: Ceilings, cached: bool) -> Any:
    from dscalc.render import Column, Grid, Report

    grid = Grid(title=f"{c.device}: {c.name}", columns=[Column("ceiling", "left"), Column("measured")],
                caption=("cached in " if cached else "measured now; cached in ") + str(cache_path())
                + " (--refresh to measure again)")
    for dtype, flops in c.peak_flops.items():
        grid.add(f"peak matmul, {dtype}", f"{flops / 1e9:,.1f} GFLOP/s")
    grid.add("memory bandwidth (copy: read + write)", f"{c.bandwidth / 1e9:,.1f} GB/s")
    grid.add("launch / dispatch floor (1-element add)", f"{c.launch * 1e6:,.1f} µs")
    ridge = max(c.peak_flops.values()) / c.bandwidth if c.peak_flops else 0.0
    grid.notes.append(f"ridge point: {ridge:.1f} FLOP/B - layers below it are memory-bound here")
    return Report(data={"command": "device", **c.to_dict(), "cached": cached, "cache": str(cache_path())},
                  records=[c.to_dict()], grids=[grid])

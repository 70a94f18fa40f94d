"""A device's measured ceilings - peak matmul FLOP/s per dtype, copy bandwidth, the launch/dispatch floor - and
their cache in the user's cache directory (platformdirs), one entry per device, thread count and torch version.

Each entry records when it was measured, with which torch, at how many threads and under what machine load
(the 1-minute load average per CPU when the measurement started). Figures measured under heavy load - every
CPU already busy - are not reused: they are measured again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dscalc.errors import missing
from dscalc.measure.settings import Settings, configured, device_name
from dscalc.measure.timer import measure

CACHE_VERSION = 2
#: a 1-minute load average per CPU above this when measuring starts marks the figures as measured under load
#: (dscalc itself is at most one of the running tasks)
HEAVY_LOAD = 1.0


@dataclass(frozen=True)
class Ceilings:
    """What one device can do, as measured by `dscalc device`."""

    device: str
    name: str
    peak_flops: dict[str, float]  # dtype -> FLOP/s of a large matmul
    bandwidth: float  # bytes/s of a large copy (read + write)
    launch: float  # seconds of the smallest op: the launch/dispatch floor
    measured_at: float = 0.0  # Unix time
    torch: str = ""
    threads: int = 0
    load: float | None = None  # 1-minute load average per CPU while measuring (None where unknown)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def under_load(self) -> bool:
        return self.load is not None and self.load > HEAVY_LOAD

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "name": self.name, "peak_flops": self.peak_flops,
                "bandwidth": self.bandwidth, "launch": self.launch, "measured_at": self.measured_at,
                "torch": self.torch, "threads": self.threads, "load": self.load}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ceilings:
        return cls(d["device"], d["name"], {k: float(v) for k, v in d["peak_flops"].items()},
                   float(d["bandwidth"]), float(d["launch"]), float(d.get("measured_at", 0.0)),
                   str(d.get("torch", "")), int(d.get("threads", 0)),
                   None if d.get("load") is None else float(d["load"]))


def cache_dir() -> Path:
    """The user's cache directory for dscalc (on Linux $XDG_CACHE_HOME/dscalc or ~/.cache/dscalc)."""
    try:
        import platformdirs
    except ImportError:  # torch installed without the [torch] extra
        raise missing("platformdirs", "torch", "dscalc's cache of measured device ceilings") from None

    return Path(platformdirs.user_cache_dir("dscalc", appauthor=False))


def cache_path() -> Path:
    return cache_dir() / "device.json"


def _key(device: str, threads: int) -> str:
    import torch

    return f"{device}:{device_name(device, threads)}:{threads}t:torch-{torch.__version__}"


def read_cache(path: Path, version: int) -> dict[str, Any]:
    """A JSON cache file of this version (a missing, unreadable or older one reads as empty)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": version}
    return data if isinstance(data, dict) and data.get("version") == version else {"version": version}


def write_cache(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON cache whole (a temporary file, then a rename). An unwritable cache is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass


def _read() -> dict[str, Any]:
    return read_cache(cache_path(), CACHE_VERSION)


def load_cached(device: str, threads: int) -> Ceilings | None:
    """The cached figures for this device and thread count, unless absent, malformed or measured under load."""
    entry = _read().get(_key(device, threads))
    try:
        cached = Ceilings.from_dict(entry) if isinstance(entry, dict) else None
    except (KeyError, TypeError, ValueError):
        return None
    return None if cached is None or cached.under_load else cached


def save(ceilings: Ceilings) -> Path:
    """Write the entry (whole: a temporary file, then a rename). An unwritable cache is not an error."""
    data = _read()
    data[_key(ceilings.device, ceilings.threads)] = ceilings.to_dict()
    path = cache_path()
    write_cache(path, data)
    return path


def machine_load() -> float | None:
    """The 1-minute load average per CPU (None where the OS has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


def measure_ceilings(device: str, threads: int, quick: bool = False) -> Ceilings:
    """Large matmuls (per dtype), a large copy, and a one-element add: each timed with the one timing protocol."""
    import functools

    import torch

    from dscalc.cost.dtypes import TIMED

    settings = Settings(device=device, threads=threads, min_run_time=0.1 if quick else 0.3,
                        max_run_time=1.0 if quick else 3.0)
    load_before = machine_load()
    peaks: dict[str, float] = {}
    with configured(settings):
        for name in TIMED:
            dtype = getattr(torch, name)
            # CPUs without half-precision matmul units run fp16/bf16 ~100x slower: keep that probe small
            n = 4096 if device != "cpu" else (1024 if name == "float32" and not quick else 256)
            try:
                a = torch.randn(n, n, device=device, dtype=dtype)
                b = torch.randn(n, n, device=device, dtype=dtype)
            except RuntimeError:
                continue
            t = measure(functools.partial(torch.matmul, a, b), settings, f"matmul {name}")
            if t.median:
                peaks[name] = 2 * n**3 / t.median
        elements = (256 if device != "cpu" else (8 if quick else 32)) * 2**20
        src = torch.empty(elements, device=device, dtype=torch.float32)
        dst = torch.empty_like(src)
        t = measure(lambda: dst.copy_(src), settings, "copy")
        bandwidth = 2 * elements * 4 / t.median if t.median else float("nan")
        tiny = torch.zeros(1, device=device)
        t = measure(lambda: tiny.add_(1), settings, "launch")
        launch = t.median or float("nan")
    return Ceilings(device, device_name(device, threads), peaks, bandwidth, launch, time.time(), torch.__version__,
                    threads, load_before)


def get_ceilings(device: str, refresh: bool = False, threads: int | None = None) -> tuple[Ceilings, bool]:
    """Cached ceilings of this device at this thread count (measured and cached when missing, measured under
    load, or when asked to refresh), and whether they came from the cache."""
    import torch

    count = threads or torch.get_num_threads()
    if not refresh:
        cached = load_cached(device, count)
        if cached is not None:
            return cached, True
    ceilings = measure_ceilings(device, count)
    save(ceilings)
    return ceilings, False


def age(seconds: float) -> str:
    """'just now', '5 minutes ago', '3 days ago'."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"

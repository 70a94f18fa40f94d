"""A device's measured ceilings - peak matmul FLOP/s per dtype, copy bandwidth, the launch/dispatch floor - and
their cache in the user's cache directory (platformdirs), one entry per device, thread count and torch version.

Each entry records when it was measured, with which torch, at how many threads and under what machine load
(the 1-minute load average per CPU when the measurement started). Figures measured under heavy load - every
CPU already busy - are not reused: they are measured again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dscalc.errors import RuntimeFailure, first_line, missing, say
from dscalc.measure.settings import BUDGET_ENV, Settings, configured, cpu_model, device_name, torch_version

CACHE_VERSION = 2
#: a 1-minute load average per CPU above this when measuring starts marks the figures as measured under load
#: (dscalc itself is at most one of the running tasks)
HEAVY_LOAD = 1.0
#: the cap on each measurement of the quick ceilings a first prediction measures (`get_ceilings(quick=True)`):
#: about two seconds in all on a 2-core CPU, where the full protocol (`dscalc device`) takes about four; cached
#: under their own key (marked by this cap), never shown by `dscalc device`, and passed over for the full figures
QUICK_RUN = 0.2


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
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # {"not_cached": why} after a failed write
    #: the cap $DSCALC_MAX_RUN_TIME put on each measurement (None: the full protocol); a shortened measurement is
    #: cached under its own key, never reused by a full run, and shown as shortened
    max_run_time: float | None = None

    @property
    def under_load(self) -> bool:
        return self.load is not None and self.load > HEAVY_LOAD

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "name": self.name, "peak_flops": self.peak_flops,
                "bandwidth": self.bandwidth, "launch": self.launch, "measured_at": self.measured_at,
                "torch": self.torch, "threads": self.threads, "load": self.load,
                **({"max_run_time": self.max_run_time} if self.max_run_time is not None else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ceilings:
        """An entry of the cache, every value checked (type, finite, positive, in range): BadEntry otherwise."""
        peaks = d.get("peak_flops")
        if not isinstance(peaks, dict) or not peaks or len(peaks) > 16:
            raise BadEntry("peak_flops: expected a few dtypes with their FLOP/s")
        return cls(text(d, "device"), text(d, "name"),
                   {text({"dtype": k}, "dtype"): number(peaks, k, hi=MAX_RATE) for k in peaks},
                   number(d, "bandwidth", hi=MAX_RATE), number(d, "launch", hi=10.0),
                   number(d, "measured_at", low=0.0, optional=True) or 0.0, text(d, "torch", optional=True),
                   integer(d, "threads", 0, 1 << 16), number(d, "load", low=0.0, hi=1e6, optional=True),
                   max_run_time=number(d, "max_run_time", optional=True))


def cache_dir() -> Path:
    """The user's cache directory for dscalc (on Linux $XDG_CACHE_HOME/dscalc or ~/.cache/dscalc)."""
    try:
        import platformdirs
    except ImportError:  # torch installed without the [torch] extra
        raise missing("platformdirs", "torch", "dscalc's cache of measured device ceilings") from None

    return Path(platformdirs.user_cache_dir("dscalc", appauthor=False))


def cache_path() -> Path:
    return cache_dir() / "device.json"


def shortened(full: float) -> float | None:
    """The cap $DSCALC_MAX_RUN_TIME puts on a measurement whose own budget is `full` seconds, None when it puts
    none (unset, or no shorter). A shortened measurement is cached under its own key (`suffix`), so a later full
    run never reuses it, and shown as shortened."""
    value = os.environ.get(BUDGET_ENV)
    try:
        cap = float(value) if value else None
    except ValueError:
        return None
    return cap if cap is not None and math.isfinite(cap) and 0 < cap < full else None


def suffix(max_run_time: float | None) -> str:
    """The cache key's mark of a shortened measurement."""
    return "" if max_run_time is None else f":max-run-{max_run_time:g}s"


def _key(device: str, threads: int, max_run_time: float | None = None) -> str:
    return f"{device}:{device_name(device, threads)}:{threads}t:torch-{torch_version()}{suffix(max_run_time)}"


# ------------------------------------------------------------------------------ the cache files, read and written

#: the largest rate a cache entry may claim (FLOP/s or bytes/s): a thousand times beyond any device today
MAX_RATE = 1e19
#: a cache file larger than this is not read (dscalc writes a few KB per device)
MAX_CACHE_BYTES = 4 * 2**20


#: the keys of entries found invalid in this run: dropped from the file when it is next written
INVALID: set[str] = set()


class BadEntry(ValueError):
    """A cache value of the wrong type, not finite, not positive or out of range."""


def number(d: dict[str, Any], key: str, *, low: float | None = None, hi: float = math.inf,
           optional: bool = False) -> Any:
    """d[key] as a finite float in (0, hi] - or [low, hi] when `low` is given; None where optional and absent."""
    value = d.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadEntry(f"{key}: expected a finite number, got {_short(value)}")
    if (value <= 0 if low is None else value < low) or value > hi:
        raise BadEntry(f"{key}: {value!r} is out of range")
    return float(value)


def integer(d: dict[str, Any], key: str, low: int, hi: int) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= hi:
        raise BadEntry(f"{key}: expected an integer from {low} to {hi}, got {_short(value)}")
    return value


def text(d: dict[str, Any], key: str, optional: bool = False) -> str:
    value = d.get(key, "" if optional else None)
    if not isinstance(value, str) or len(value) > 200:
        raise BadEntry(f"{key}: expected a short text, got {_short(value)}")
    return value


def flag(d: dict[str, Any], key: str, default: bool = False) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise BadEntry(f"{key}: expected true or false, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    shown = repr(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__
    return shown if len(shown) <= 24 else shown[:21] + "..."


def shown(path: Path) -> str:
    """A path under the home directory as ~/... (messages name the cache file this way)."""
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def warn(path: Path, what: str) -> None:
    """A note on stderr about the cache file `path` (escaped, one line): the run goes on."""
    say(f"dscalc: warning: {shown(path)}: {what}")


def read_cache(path: Path, version: int, quiet: bool = False) -> dict[str, Any]:
    """A JSON cache file of this version (a missing or older one reads as empty). One that cannot be read - not
    JSON, too large, nested too deeply - reads as empty too, and (unless `quiet`) says so: it is measured again."""
    try:
        if path.stat().st_size > MAX_CACHE_BYTES:
            raise ValueError(f"larger than {MAX_CACHE_BYTES // 2**20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"version": version}
    except RecursionError:
        data = ValueError("nested too deeply")
    except (OSError, ValueError) as e:
        data = e
    if isinstance(data, Exception):
        if not quiet:
            why = data.strerror if isinstance(data, OSError) else first_line(data, 80)
            warn(path, f"not a readable cache ({why}); measuring again")
        return {"version": version}
    return data if isinstance(data, dict) and data.get("version") == version else {"version": version}


def write_cache(path: Path, data: dict[str, Any], quiet: bool = False) -> str | None:
    """Write a JSON cache whole (a temporary file beside it, then a rename; the temporary file never stays).
    An unwritable cache is not an error: it says so on stderr (unless `quiet`) and returns why (None once
    written)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dscalc-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=1, allow_nan=False))
        os.replace(tmp, path)
        return None
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e, 80)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if not quiet:
            warn(path, f"cannot write the cache ({why}); the figures are not kept")
        return why


def _read(quiet: bool = False) -> dict[str, Any]:
    return read_cache(cache_path(), CACHE_VERSION, quiet)


def load_cached(device: str, threads: int, quick: bool = False) -> Ceilings | None:
    """The cached figures for this device and thread count - a full measurement, else (under
    $DSCALC_MAX_RUN_TIME) one shortened as much - unless absent, invalid (said on stderr) or measured under load.
    With `quick` (what a prediction needs, without waiting), the quick figures too, and figures measured under
    load where there are no others (none is measured again for a prediction). Imports no torch on a CPU."""
    data = _read()
    keys = [_key(device, threads), _key(device, threads, shortened(3.0))]
    if quick:
        keys += [_key(device, threads, QUICK_RUN), _key(device, threads, shortened(QUICK_RUN) or QUICK_RUN)]
    loaded = None
    for key in dict.fromkeys(keys):
        entry = data.get(key)
        if entry is None:
            continue
        try:
            if not isinstance(entry, dict):
                raise BadEntry(f"expected an object, got {type(entry).__name__}")
            cached = Ceilings.from_dict(entry)
        except BadEntry as e:
            warn(cache_path(), f"the entry for {device} at {threads} threads is invalid ({e}); measuring again")
            INVALID.add(key)
            continue
        if not cached.under_load:
            return cached
        loaded = loaded or cached
    return loaded if quick else None


def save(ceilings: Ceilings) -> Path | None:
    """Write the entry (whole: a temporary file, then a rename); the cache file, or None where it could not be
    written (said on stderr; not an error)."""
    data = {k: v for k, v in _read(quiet=True).items() if k not in INVALID}  # a bad entry goes with the next write
    data[_key(ceilings.device, ceilings.threads, ceilings.max_run_time)] = ceilings.to_dict()
    path = cache_path()
    return None if write_cache(path, data) else path


# ------------------------------------------------ torch's default thread count, known without importing torch

#: the environment variables torch reads for its default thread count (ATen's intraop_default_num_threads:
#: OMP_NUM_THREADS, then MKL_NUM_THREADS, else the physical cores cpuinfo counts - or MKL's own count in an
#: OpenMP + MKL build, the performance cores on Apple silicon): too many build-dependent paths to recompute, so
#: the count torch reports is recorded once per machine, keyed by everything it depends on
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
THREADS_VERSION = 1


def machine_threads_key() -> str:
    """What torch's default thread count depends on, here: the machine, its CPUs (all, and those this process may
    run on), the thread variables and the torch build."""
    import platform

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = 0
    env = ",".join(f"{v}={os.environ.get(v, '')}" for v in THREAD_ENV)
    return f"{platform.node()}|{cpu_model()}|{os.cpu_count()}cpus|{usable}usable|{env}|torch-{torch_version()}"


def default_threads() -> int:
    """`torch.get_num_threads()` before anything sets it - the thread count of a run without --threads, which the
    cache keys carry. Asked of torch where it is already imported; else recorded the first time dscalc asks torch
    on this machine (threads.json in the cache, keyed by `machine_threads_key`) and read back from then on, so
    that predicting from a cached calibration imports no torch."""
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    key = machine_threads_key()
    try:
        path: Path | None = cache_dir() / "threads.json"
    except RuntimeFailure:  # no platformdirs: no cache to record it in
        path = None
    data = read_cache(path, THREADS_VERSION, quiet=True) if path is not None else {}
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1 << 16:
        return value
    import torch

    count = int(torch.get_num_threads())
    if path is not None:  # (unwritable: asked of torch again next time, silently - the other caches say so)
        kept = {k: v for k, v in data.items() if k == "version" or isinstance(v, int)}
        write_cache(path, {**kept, key: count}, quiet=True)
    return count


def machine_load() -> float | None:
    """The 1-minute load average per CPU (None where the OS has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):
        return None


def measure_ceilings(device: str, threads: int, quick: bool = False) -> Ceilings:
    """Large matmuls (per dtype), a large copy, and a one-element add: each timed with the one timing protocol
    (`quick`: the same kernels, each for at most QUICK_RUN seconds - about two seconds in all on a CPU)."""
    import functools

    import torch

    from dscalc.cost.dtypes import TIMED
    from dscalc.measure.timer import measure  # only when measuring: reading the cache needs no timer

    settings = Settings(device=device, threads=threads, min_run_time=0.02 if quick else 0.3,
                        max_run_time=QUICK_RUN if quick else 3.0)
    load_before = machine_load()
    peaks: dict[str, float] = {}
    with configured(settings):
        for name in TIMED:
            dtype = getattr(torch, name)
            # CPUs without half-precision matmul units run fp16/bf16 ~100x slower: keep that probe small
            n = 4096 if device != "cpu" else (1024 if name == "float32" else 256)
            try:
                a = torch.randn(n, n, device=device, dtype=dtype)
                b = torch.randn(n, n, device=device, dtype=dtype)
            except RuntimeError:
                continue
            t = measure(functools.partial(torch.matmul, a, b), settings, f"matmul {name}")
            if t.median:
                peaks[name] = 2 * n**3 / t.median
        elements = (256 if device != "cpu" else 32) * 2**20  # (8M floats fit a large L3: twice the bandwidth)
        src = torch.empty(elements, device=device, dtype=torch.float32)
        dst = torch.empty_like(src)
        t = measure(lambda: dst.copy_(src), settings, "copy")
        bandwidth = 2 * elements * 4 / t.median if t.median else float("nan")
        tiny = torch.zeros(1, device=device)
        t = measure(lambda: tiny.add_(1), settings, "launch")
        launch = t.median or float("nan")
    return Ceilings(device, device_name(device, threads), peaks, bandwidth, launch, time.time(), torch.__version__,
                    threads, load_before,
                    max_run_time=shortened(QUICK_RUN) or QUICK_RUN if quick else shortened(settings.max_run_time))


def get_ceilings(device: str, refresh: bool = False, threads: int | None = None,
                 quick: bool = False) -> tuple[Ceilings, bool]:
    """Cached ceilings of this device at this thread count (measured and cached when missing, measured under
    load, or when asked to refresh), and whether they came from the cache. With `quick` (a prediction: it never
    waits for the full protocol), any cached figures (`load_cached(quick=True)`), else the quick ones measured
    now. Imports no torch on a CPU where they are cached."""
    count = threads or default_threads()
    if not refresh:
        cached = load_cached(device, count, quick) or (_QUICK.get((device, count)) if quick else None)
        if cached is not None:
            return cached, True
    ceilings = measure_ceilings(device, count, quick)
    if save(ceilings) is None:  # not written (said on stderr): the report must not claim it is cached
        ceilings = replace(ceilings, extra={"not_cached": True})
        if quick:  # (nor measured again by the next prediction of this run)
            _QUICK[(device, count)] = ceilings
    return ceilings, False


#: quick ceilings measured in this run that the cache could not keep, by (device, threads)
_QUICK: dict[tuple[str, int], Ceilings] = {}


def age(seconds: float) -> str:
    """'just now', '5 minutes ago', '3 days ago'."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"

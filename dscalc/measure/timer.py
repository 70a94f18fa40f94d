"""Measured latency with torch.utils.benchmark, one protocol for every measurement: three warm-up calls, then
timed blocks of about BLOCK seconds (as many calls as fill one; a single call when one is longer) until at least
MIN_RUNS blocks and min_run_time have passed and the IQR is under 5% of the median, or max_run_time is spent - the
rule of the benchmark's adaptive_autorange, whose own block sizing (10x steps until a block passes 10-50 ms, a
26 µs kernel timed in blocks of 260 ms) made a measurement asked to take 0.05 s take 1.6 s. CUDA is synchronized
by the benchmark timer. A timing is *reliable* when it ran at least MIN_RUNS blocks and its IQR is at most
RELIABLE_IQR of its median; otherwise every output says so.
Errors of one row (out of memory, an unsupported dtype) come back in that row's record."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from dscalc.cost.parse import env_seconds
from dscalc.errors import first_line
from dscalc.measure.settings import BUDGET_ENV, Settings

#: fewest timed blocks a reliable timing has
MIN_RUNS = 5
#: largest IQR / median a reliable timing has
RELIABLE_IQR = 0.10
#: seconds a timed block lasts (its calls: `calls_per_block`), and the IQR / median at which timing stops early
BLOCK, STOP_IQR = 0.01, 0.05


@dataclass(frozen=True)
class Timing:
    """One measured latency: median and quartiles in seconds over `runs` timed blocks of `per_run` calls, and the
    runtime that ran it (`measure.runtimes`): its name, version, own settings, and the seconds it took to build the
    timed call (torch.compile's compilation, ONNX export + session, LiteRT conversion) - never part of the median."""

    median: float | None
    iqr: float | None
    runs: int
    per_run: int
    error: str | None = None
    q1: float | None = None
    q3: float | None = None
    runtime: str = "eager"
    runtime_version: str = ""
    runtime_settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    setup_s: float | None = None

    @property
    def reliable(self) -> bool:
        return (self.error is None and self.median is not None and self.iqr is not None
                and self.runs >= MIN_RUNS and self.iqr <= RELIABLE_IQR * self.median)

    @property
    def why_unreliable(self) -> str:
        """'' when reliable; else what is wrong: 'IQR 34% of median', '3 runs'."""
        if self.error or self.median is None or self.iqr is None:
            return ""
        reasons = []
        if self.runs < MIN_RUNS:
            reasons.append(f"{self.runs} run{'s' if self.runs != 1 else ''}")
        if self.iqr > RELIABLE_IQR * self.median:
            reasons.append(f"IQR {100 * self.iqr / self.median:.0f}% of median")
        return ", ".join(reasons)

    def to_dict(self) -> dict[str, Any]:
        ran = {"runtime": self.runtime, "runtime_version": self.runtime_version,
               "runtime_settings": dict(self.runtime_settings), "setup_s": self.setup_s}
        if self.error:
            return {"error": self.error, **ran}
        return {"median_s": self.median, "iqr_s": self.iqr, "q1_s": self.q1, "q3_s": self.q3, "runs": self.runs,
                "per_run": self.per_run, "reliable": self.reliable, **ran}

    @classmethod
    def failed(cls, error: str) -> Timing:
        return cls(None, None, 0, 0, error)


@dataclass(frozen=True)
class Ratio:
    """Time of A / time of B over interleaved blocks (A, B, A, B, ...): each block pair sees the same machine, so
    a load that comes and goes moves both sides and cancels in the ratio. Its quartiles decide a verdict."""

    median: float
    q1: float
    q3: float
    blocks: int

    @property
    def decided(self) -> bool:
        """The interquartile range of the ratio lies on one side of 1."""
        return self.q1 > 1 or self.q3 < 1

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "blocks": self.blocks}


def overlap(a: Timing | None, b: Timing | None) -> bool:
    """True when the interquartile ranges of two timings overlap: their order is not established."""
    if a is None or b is None or a.q1 is None or a.q3 is None or b.q1 is None or b.q3 is None:
        return False
    return a.q1 <= b.q3 and b.q1 <= a.q3




def budgeted(settings: Settings) -> Settings:
    """The settings with their run times capped by $DSCALC_MAX_RUN_TIME where it is set."""
    cap = env_seconds(BUDGET_ENV)
    if cap is None:
        return settings
    return replace(settings, min_run_time=min(settings.min_run_time, cap), max_run_time=min(settings.max_run_time,
                                                                                              cap))


#: glibc's malloc serves a block above its mmap threshold (128 KiB at first) from fresh pages and unmaps them on
#: free - a page fault per 4 KiB on every call - until the process frees such a block; then the threshold rises to
#: that block's size (at most 32 MiB) and later blocks come from the heap, kept. An NCHW depthwise conv whose
#: scratch buffers take 14 MiB (k5, 48 x 40², batch 16) ran 4.8 ms a call in a fresh process and 1.0 ms once one
#: 16 MiB tensor had been freed (3,568 page faults a call -> 0; benchmarks/bench_allocator.py). Which of the two a
#: timing saw depended on what the process had freed before it. Every timing now starts from the steady state, the
#: one a process is in once it has freed a large tensor: this block, allocated, touched and freed once.
STEADY_BLOCK = 32 * 1024 * 1024 - 64 * 1024
_steady = False


def steady_allocator() -> None:
    """Bring glibc's malloc to its steady state (above), once per process; elsewhere (macOS, musl) nothing."""
    global _steady
    if _steady:
        return
    _steady = True
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    import torch

    block = torch.empty(STEADY_BLOCK, dtype=torch.uint8)
    block.fill_(0)
    del block


def measure(fn: Callable[[], Any], settings: Settings, label: str = "") -> Timing:
    """Median latency of `fn` by the protocol above, the allocator in its steady state (`steady_allocator`)."""
    import logging

    import torch

    steady_allocator()

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU builds
    from torch.utils import benchmark

    settings = budgeted(settings)
    try:
        for _ in range(3):
            fn()
        if settings.device.startswith("cuda"):
            torch.cuda.synchronize()
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label,
                                num_threads=settings.threads or torch.get_num_threads())
        number = calls_per_block(timer)
        per_call: list[float] = []
        spent = 0.0
        while True:
            block = timer.timeit(number).raw_times[0]
            spent += block
            per_call.append(block / number)
            enough = len(per_call) >= MIN_RUNS and spent >= settings.min_run_time
            if enough or spent >= 3 * settings.max_run_time:  # slow calls: fewer blocks (an unreliable timing)
                q1, med, q3 = _quartiles(per_call)
                if not enough or q3 - q1 < STOP_IQR * med or spent >= settings.max_run_time:
                    break
        return Timing(med, q3 - q1, len(per_call), number, q1=q1, q3=q3)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return Timing.failed("out of memory")
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as e:
        return Timing.failed(first_line(e))


def calls_per_block(timer: Any) -> int:
    """Calls per timed block: enough for a block to take about BLOCK seconds, from one timed call (a single call
    when one call is longer; at most 10,000)."""
    once = timer.timeit(1).raw_times[0]
    return max(1, min(10_000, int(BLOCK / max(once, 1e-9))))


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) >= 2:
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return q1, statistics.median(values), q3
    return values[0], values[0], values[0]


def measure_pair(fn_a: Callable[[], Any], fn_b: Callable[[], Any], settings: Settings,
                 labels: tuple[str, str] = ("", "")) -> tuple[Timing, Timing, Ratio | None]:
    """Both calls timed in interleaved blocks (A, B, A, B, ...) by torch.utils.benchmark, until at least MIN_RUNS
    block pairs and min_run_time have passed and the ratio's IQR is under 5% of its median, or the time budget
    (2 x max_run_time) is spent. Returns each call's timing and the paired ratio A / B."""
    import logging

    import torch

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    settings = budgeted(settings)
    try:
        for _ in range(3):
            fn_a()
            fn_b()
        if settings.device.startswith("cuda"):
            torch.cuda.synchronize()
        threads = settings.threads or torch.get_num_threads()
        timers = [benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label, num_threads=threads)
                  for fn, label in ((fn_a, labels[0]), (fn_b, labels[1]))]
        numbers = [calls_per_block(timer) for timer in timers]
        times: list[list[float]] = [[], []]
        spent = 0.0
        while True:
            for side in (0, 1):
                block = timers[side].timeit(numbers[side]).raw_times[0]
                spent += block
                times[side].append(block / numbers[side])
            ratios = [a / b for a, b in zip(*times)]
            if len(ratios) >= MIN_RUNS and spent >= settings.min_run_time:
                q1, med, q3 = _quartiles(ratios)
                if q3 - q1 < STOP_IQR * med or spent >= 2 * settings.max_run_time:
                    break
        out = []
        for side in (0, 1):
            q1, med, q3 = _quartiles(times[side])
            out.append(Timing(med, q3 - q1, len(times[side]), numbers[side], q1=q1, q3=q3))
        q1, med, q3 = _quartiles(ratios)
        return out[0], out[1], Ratio(med, q1, q3, len(ratios))
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return Timing.failed("out of memory"), Timing.failed("out of memory"), None
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as e:
        return Timing.failed(first_line(e)), Timing.failed(first_line(e)), None

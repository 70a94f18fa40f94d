"""Measured latency with torch.utils.benchmark: warm-up, adaptive repeats until the IQR is small, median,
IQR and run count; CUDA synchronized by the benchmark timer; cudnn.benchmark on; TF32 state reported.
Errors of one row (out of memory, an unsupported dtype) come back in that row's record."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from dscalc.errors import BadInput, RuntimeFailure
from dscalc.records import LayerCost

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    threads: int | None = None
    tf32: bool = False
    min_run_time: float = 0.2
    max_run_time: float = 2.0


@dataclass(frozen=True)
class Timing:
    """One measured latency: median and IQR in seconds over `runs` timed blocks of `per_run` calls."""

    median: float | None
    iqr: float | None
    runs: int
    per_run: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        return {"median_s": self.median, "iqr_s": self.iqr, "runs": self.runs, "per_run": self.per_run}


def check_device(device: str) -> None:
    """cpu always; cuda only where torch sees a CUDA device (runtime failure otherwise)."""
    if device == "cpu":
        return
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeFailure("--device cuda: no CUDA device is available here (torch.cuda.is_available() "
                                 "is False)")
        return
    raise BadInput(f"must be cpu or cuda, got {device!r}", "device")


@contextlib.contextmanager
def configured(settings: Settings) -> Iterator[dict[str, Any]]:
    """cudnn.benchmark on, TF32 as asked, CPU threads as asked, inference mode; restored afterwards."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32, torch.get_num_threads())
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = settings.tf32
    torch.backends.cudnn.allow_tf32 = settings.tf32
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        with torch.inference_mode():
            yield describe(settings)
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved[:3]
        torch.set_num_threads(saved[3])


def describe(settings: Settings) -> dict[str, Any]:
    """The conditions a measurement runs under, for the report."""
    return {"device": device_name(settings.device), "dtype": settings.dtype, "channels_last": settings.channels_last,
            "threads": settings.threads or torch.get_num_threads(), "tf32": settings.tf32, "cudnn_benchmark": True}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def measure(fn: Callable[[], Any], settings: Settings, label: str = "") -> Timing:
    """Median latency of `fn` (warm-up first; repeats until IQR/median < 10% or max_run_time)."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU builds
    from torch.utils import benchmark

    try:
        for _ in range(3):
            fn()
        if settings.device == "cuda":
            torch.cuda.synchronize()
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, label=label,
                                num_threads=settings.threads or torch.get_num_threads())
        m = timer.adaptive_autorange(threshold=0.05, min_run_time=settings.min_run_time,
                                     max_run_time=settings.max_run_time)
        return Timing(m.median, m.iqr, len(m.raw_times), m.number_per_run)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return Timing(None, None, 0, 0, "out of memory")
    except (RuntimeError, NotImplementedError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Timing(None, None, 0, 0, text[:120])


def module_for(layer: LayerCost) -> torch.nn.Module:
    """The torch module that computes a conv or linear LayerCost (random weights)."""
    from torch import nn

    if layer.kind == "linear":
        return nn.Linear(layer.input_shape[1], layer.output_shape[1], bias=layer.bias > 0)
    dims = len(layer.kernel)
    cin, cout = layer.input_shape[1], layer.output_shape[1]
    kw: dict[str, Any] = dict(stride=layer.stride, dilation=layer.dilation, groups=layer.groups, bias=layer.bias > 0)
    if layer.kind == "transposed":
        cls: Any = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dims - 1]
        pads = tuple(max(p) for p in layer.padding)
        return cls(cin, cout, layer.kernel, padding=pads, output_padding=tuple(layer.extra["output_padding"]), **kw)
    cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    if all(a == b for a, b in layer.padding):
        return cls(cin, cout, layer.kernel, padding=tuple(a for a, _ in layer.padding), **kw)
    # asymmetric ('same' on even sizes): pad explicitly, as TF does
    flat: Any = tuple(p for pair in reversed(layer.padding) for p in pair)
    return nn.Sequential(nn.ZeroPad1d(flat) if dims == 1 else nn.ZeroPad2d(flat) if dims == 2 else nn.ZeroPad3d(flat),
                         cls(cin, cout, layer.kernel, padding=0, **kw))


def prepare(module: torch.nn.Module, input_shape: tuple[int, ...], settings: Settings) -> Callable[[], Any]:
    """Move a module and a random input to the device, dtype and memory format; return the call to time."""
    dtype = DTYPES.get(settings.dtype)
    if dtype is None:
        raise BadInput(f"timing supports {', '.join(DTYPES)}, not {settings.dtype}", "dtype")
    module = module.to(device=settings.device, dtype=dtype).eval()
    x = torch.randn(input_shape, device=settings.device, dtype=dtype)
    if settings.channels_last and x.dim() in (4, 5):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        module = module.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
    return lambda: module(x)


def time_layer(layer: LayerCost, settings: Settings) -> Timing:
    """Measured latency of one conv/linear layer as a torch module."""
    try:
        fn = prepare(module_for(layer), layer.input_shape, settings)
    except torch.cuda.OutOfMemoryError:
        return Timing(None, None, 0, 0, "out of memory")
    except (RuntimeError, TypeError) as e:
        return Timing(None, None, 0, 0, str(e).strip().splitlines()[0][:120])
    return measure(fn, settings, layer.name)


def time_pair(first: LayerCost, second: LayerCost, settings: Settings) -> Timing:
    """Measured latency of two layers run back to back (depthwise then pointwise)."""
    from torch import nn

    try:
        fn = prepare(nn.Sequential(module_for(first), module_for(second)), first.input_shape, settings)
    except torch.cuda.OutOfMemoryError:
        return Timing(None, None, 0, 0, "out of memory")
    except (RuntimeError, TypeError) as e:
        return Timing(None, None, 0, 0, str(e).strip().splitlines()[0][:120])
    return measure(fn, settings, f"{first.name}+{second.name}")

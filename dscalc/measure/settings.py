"""The conditions a measurement runs under - device, dtype, memory format, threads, TF32, the runtime - checked once
at the boundary, applied inside `configured()` and restored afterwards. (The runtimes themselves, and the checks
that need them, are in `measure.runtimes`.)"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dscalc.cost import dtypes
from dscalc.errors import BadInput, RuntimeFailure

#: caps the time budget of every measurement, in seconds (the test suite sets it: its assertions never depend on
#: how long a kernel was timed, and a full budget per row would take most of its run)
BUDGET_ENV = "DSCALC_MAX_RUN_TIME"


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    threads: int | None = None
    tf32: bool = False
    min_run_time: float = 0.2
    max_run_time: float = 2.0
    runtime: str = "eager"  # a name in measure.runtimes.RUNTIMES


def check_device_name(device: str) -> str:
    """`cpu`, `cuda` or `cuda:N`; bad input for any other name (without importing torch)."""
    if device != "cpu" and re.fullmatch(r"cuda(?::\d{1,4})?", device) is None:
        raise BadInput(f"expected cpu, cuda or cuda:N, got {device[:40]!r}", "device")
    return device


def check_device(device: str) -> str:
    """`cpu`, `cuda` or `cuda:N`: bad input for any other name; a runtime failure where CUDA (or device N) is
    missing."""
    if check_device_name(device) == "cpu":
        return device
    match = re.fullmatch(r"cuda(?::(\d{1,4}))?", device)
    assert match is not None
    import torch

    if not torch.cuda.is_available():
        raise RuntimeFailure(f"--device {device}: no CUDA device is available here (torch.cuda.is_available() "
                             "is False)")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise RuntimeFailure(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_threads(threads: int | None) -> int | None:
    """None (torch's default) or 1 .. this machine's CPU count."""
    if threads is None:
        return None
    cpus = os.cpu_count() or 1
    if not 1 <= threads <= cpus:
        shown = f"{threads:,}" if abs(threads) < 10**15 else f"{threads:.3g}"
        raise BadInput(f"must be between 1 and {cpus} (this machine's CPUs), got {shown}", "threads")
    return threads


def settings(device: str = "cpu", dtype: str = "float32", channels_last: bool = False, threads: int | None = None,
             tf32: bool = False) -> Settings:
    """Checked settings: the device exists, the dtype can be timed, the thread count is possible."""
    dtypes.check(dtype, timed=True)
    check_threads(threads)
    return Settings(device=check_device(device), dtype=dtype, channels_last=channels_last, threads=threads,
                    tf32=tf32)


@contextlib.contextmanager
def configured(settings: Settings) -> Iterator[dict[str, Any]]:
    """cudnn.benchmark on, TF32 as asked, CPU threads as asked, inference mode; all restored afterwards."""
    import torch

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
    import torch

    threads = settings.threads or torch.get_num_threads()
    return {"device": device_name(settings.device, threads), "dtype": settings.dtype,
            "channels_last": settings.channels_last, "threads": threads, "tf32": settings.tf32,
            "cudnn_benchmark": True, "torch": torch.__version__, "runtime": settings.runtime}


def device_name(device: str, threads: int | None = None) -> str:
    """`NVIDIA H100 80GB HBM3`, or the CPU's model name with the thread count timing uses (given, a CPU's name
    needs no torch: `ceilings.default_threads` knows the default count without it once it has been recorded)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return f"{cpu_model()} ({threads} thread{'s' if threads != 1 else ''})"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


# ------------------------------------------------------------------- what torch would say, without importing it

def torch_version() -> str:
    """`torch.__version__` without importing torch: read from the `torch/version.py` its build writes (the
    package metadata drops the local label: '2.14.1', not '2.14.1+cu130', and the cache keys have the full one).
    Imports torch only where that file cannot be read."""
    if "torch" in sys.modules:
        return str(sys.modules["torch"].__version__)
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        for folder in folders:
            with open(os.path.join(folder, "version.py"), encoding="utf-8") as f:
                match = re.search(r"^__version__(?:\s*:\s*str)?\s*=\s*['\"]([^'\"\n]{1,64})['\"]", f.read(),
                                  re.MULTILINE)
            if match:
                return match.group(1)
    except (OSError, ImportError, ValueError, UnicodeDecodeError):
        pass
    import torch

    return str(torch.__version__)

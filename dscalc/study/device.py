"""`dscalc device`: this machine's measured ceilings (and each runtime's matmul peak and call floor), or, with
`calibrate`, the fitted latency model of every kernel kind."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dscalc.errors import BadInput
from dscalc.study import options as O
from dscalc.study.records import Study

if TYPE_CHECKING:
    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.predict import Calibration
    from dscalc.measure.timer import Timing


@dataclass(frozen=True, repr=False)
class DeviceStudy(Study):
    """This device's measured ceilings (and each runtime's matmul peak and call floor), or its calibration."""

    ceilings: Ceilings | None = None
    cached: bool = False
    runtimes: tuple[tuple[dict[str, Any], Timing, Timing], ...] = ()  # context, matmul, floor per runtime
    matmul_n: int = 0
    calibration: Calibration | None = None
    command: str = "device"

    @property
    def rows(self) -> list[Any]:
        return [self.ceilings or self.calibration]


def device(device: str = "cpu", refresh: bool = False, threads: int | None = None,
           runtime: str | list[str] = "eager", calibrate: bool = False, dtype: str = "float32",
           channels_last: bool = False, budget: float | None = None, *,
           progress: O.Progress = O.QUIET) -> DeviceStudy:
    """Measured ceilings of this CPU/GPU: peak matmul FLOP/s per dtype, copy bandwidth, launch floor (cached);
    with `calibrate`, the fitted latency model of every kernel kind."""
    from dscalc.measure.runtimes import DEFAULT, check, parse
    from dscalc.measure.settings import Settings, check_device, check_threads

    check_threads(threads)
    names = parse(runtime if isinstance(runtime, str) else ",".join(runtime))
    O.need("torch", "torch", "dscalc device")
    check_device(device)
    if calibrate:
        from dscalc.cost.dtypes import check as check_dtype
        from dscalc.measure.calibrate import BUDGET, get_calibration, probe_count

        if len(names) != 1:
            raise BadInput("--calibrate takes one runtime at a time", "runtime")
        base = Settings(device=device, dtype=check_dtype(dtype, timed=True).name, channels_last=channels_last,
                        threads=threads)
        one = check(names, base, channels_last)[0] if names != [DEFAULT] else base
        seconds = BUDGET if budget is None else budget
        if not 0 < seconds <= 86400:
            raise BadInput(f"--budget must be a number of seconds from 0 to 86400, got {budget}", "budget")
        count = probe_count(one.dtype, seconds)
        with progress.bar(f"calibrating {device} (up to {seconds:.0f} s)", count) as advance:
            cal, cached = get_calibration(one, refresh=refresh, progress=advance, budget=seconds)
        return DeviceStudy(calibration=cal, cached=cached)
    runs = check(names, Settings(device=device, threads=threads)) if names != [DEFAULT] else None
    from dscalc.measure.ceilings import get_ceilings

    with progress.spinner(f"measuring {device} ceilings"):
        ceilings, cached = get_ceilings(device, refresh=refresh, threads=threads)
        if not runs:
            return DeviceStudy(ceilings, cached)
        from dscalc.measure import runtimes
        from dscalc.measure.modules import matmul_n, probes
        from dscalc.measure.settings import configured

        ceilings = get_ceilings(device, threads=threads)[0]
        measured = []
        for s in runs:
            quick = replace(s, min_run_time=0.1, max_run_time=1.0)
            with configured(quick):
                matmul, floor = probes(quick)
                context = runtimes.context(quick)
            measured.append((context, matmul, floor))
        return DeviceStudy(ceilings, cached, tuple(measured), matmul_n(device))

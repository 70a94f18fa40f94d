"""The options at the boundary, checked in one place for the CLI and the Python API alike: timing settings
(--time), runtimes (--runtime), training (--training, --optimizer, --memory-limit), prediction (--predict), and
which options go together. Each rule raises BadInput (exit 2) or RuntimeFailure (a missing extra, exit 1)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dscalc.cost.dtypes import check as check_dtype
from dscalc.errors import BadInput, RuntimeFailure

if TYPE_CHECKING:
    from dscalc.measure.settings import Settings


@dataclass(frozen=True)
class TrainingOptions:
    """`--training`, `--optimizer`, `--memory-limit`, checked."""

    optimizer: str = "adam"
    memory_limit: int | None = None  # bytes


class Progress:
    """How a study shows that it is working: nothing (the Python API); the CLI draws spinners and bars on stderr."""

    @contextlib.contextmanager
    def spinner(self, text: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def bar(self, text: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        yield lambda: None


QUIET = Progress()


def typed(fn: Callable[..., Any], values: dict[str, Any]) -> set[str]:
    """The options of `fn` whose value differs from its default: what a Python caller chose (the CLI passes
    the options the user typed instead)."""
    return {n for n, p in inspect.signature(fn).parameters.items()
            if n in values and p.default is not inspect.Parameter.empty and values[n] != p.default}


def text(value: Any) -> str:
    """An option the CLI takes as text, from Python too: 3 -> '3', (28, 56) -> '28x56'."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


def maybe(value: Any) -> str | None:
    """`text`, keeping None (an option left out)."""
    return None if value is None else text(value)


def reject(typed_: Collection[str], why: str) -> None:
    """Options that do not apply to what is being costed: one line, exit 2."""
    if typed_:
        raise BadInput(why, sorted(typed_)[0])


def need(module: str, extra: str, what: str) -> None:
    """A missing optional dependency: one line naming the extra that brings it, exit 1."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise RuntimeFailure(f"{what} needs {module}, which is not installed: pip install 'dscalc[{extra}]'")


def timing(time: bool, device: str, dtype: str, channels_last: bool, threads: int | None,
           tf32: bool) -> Settings | None:
    """Checked timing settings with --time (None without); the device name and thread count are checked either
    way, so a mistyped value is never silently ignored."""
    from dscalc.measure.settings import check_device_name, check_threads, settings

    check_threads(threads)
    check_device_name(device)
    if not time:
        return None
    need("torch", "torch", "--time")
    from dscalc.measure.timer import budgeted

    return budgeted(settings(device, dtype, channels_last, threads, tf32))  # a bad $DSCALC_MAX_RUN_TIME: exit 2


def runtimes(runtime: str | list[str] | tuple[str, ...], settings: Settings | None, time: bool,
             channels_last: bool | None = None) -> tuple[Settings, ...]:
    """`--runtime`: checked settings per runtime, or () for the default (torch eager alone, measured as ever).
    An unknown name is bad input (exit 2); a runtime that is not installed, one line naming its extra (exit 1)."""
    if runtime in ("eager", ["eager"], ("eager",)):  # the default: nothing to check (nor to import)
        return ()
    from dscalc.measure.runtimes import DEFAULT, check, parse

    names = parse(runtime if isinstance(runtime, str) else ",".join(runtime))
    if names == [DEFAULT]:
        return ()
    if not time or settings is None:
        raise BadInput("applies to measurements: add --time", "runtime")
    return tuple(check(names, settings, channels_last))


def training(training: bool, optimizer: str, memory_limit: str | int | None, runs: tuple[Settings, ...],
             given: Collection[str]) -> TrainingOptions | None:
    """Checked training options with --training (or --memory-limit), None without; --optimizer alone is refused,
    and so is --training with several runtimes (a training step is timed in torch eager)."""
    if not training and memory_limit is None and optimizer == "adam" and "optimizer" not in given:
        return None  # the default: nothing to check (nor to import)
    from dscalc.cost import training as T

    T.optimizer(optimizer)
    limit = T.parse_bytes(str(memory_limit)) if memory_limit is not None else None
    if not training and memory_limit is None:
        reject(set(given) & {"optimizer"}, "applies with --training")
        return None
    if runs:
        raise BadInput("times a training step in torch eager; --runtime compares inference runtimes", "training")
    return TrainingOptions(optimizer, limit)


def dtype_trains(dtype: str) -> None:
    if not check_dtype(dtype).timed:
        raise BadInput(f"training needs a floating dtype (float32, float16, bfloat16), not {dtype}", "dtype")


def predicting(time: bool, predict: bool, settings: Settings | None, device: str, progress: Progress) -> None:
    """--predict needs torch (a first prediction measures the device's ceilings); a prediction (with --time or
    --predict) is made ready by `estimated`, never by calibrating."""
    if predict:
        need("torch", "torch", "--predict")
    if time or predict:
        estimated(settings, device, progress)


def estimated(settings: Settings | None, device: str = "cpu", progress: Progress = QUIET) -> None:
    """Predictions never wait for a calibration - only `dscalc device --calibrate` makes one (about two minutes,
    with its progress bar), with --time too: a measurement takes seconds (`compare --time` of one layer: ~6 s of
    CPU on a 2-core CPU), and the prediction beside it is not worth 15 times that unasked. They come from this
    device's cached calibration, else from a quick estimate, the roofline of its ceilings: cached, or the first
    time measured now (a few seconds, behind a spinner), and the report says which and how to calibrate."""
    from dscalc.measure.ceilings import default_threads, get_ceilings, load_cached
    from dscalc.measure.settings import Settings

    base = settings if settings is not None else Settings(device=device)
    threads = base.threads or default_threads()
    if load_cached(base.device, threads, quick=True) is None:  # (cached: read, no torch on a CPU)
        with progress.spinner(f"measuring {base.device} ceilings for a quick estimate (not calibrated; a few "
                              "seconds)"):
            get_ceilings(base.device, refresh=True, threads=threads, quick=True)


def source_trains(source: Any) -> None:
    """`--training` applies to models built from code: bad input (one line) for graph formats."""
    spec = source.spec
    if spec.graph or not getattr(spec, "torch", True):
        raise BadInput(f"--training needs a PyTorch nn.Module built from code (.py, torchvision:, timm:, a pickled "
                       f"module); {source.target} is {spec.noun} graph, whose backward autograd cannot trace",
                       "training")

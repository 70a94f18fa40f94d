"""Calibration: measure a designed set of kernels of every kind on this device - depthwise (k 3/5/7, stride 1/2,
depth multiplier), pointwise, standard, grouped, transposed, linear, and the memory-bound ops a model also runs
(batch norm, activation, add, pooling) - across channels, spatial sizes and batches, fit one `KernelModel` per
kind (`measure.predict`) and cache the result per device, threads, dtype, memory format, runtime and torch version.

The initial design is fixed (the same kernels every time, chosen to span the space); where scikit-learn is
installed, adaptive sampling (as nn-Meter's) then adds kernels from a seeded candidate pool where the learned
ensemble (`measure.learned`) is least sure - the largest spread of its per-tree predictions - measures them,
refits, and stops at the time budget (default 2 minutes). `benchmarks/bench_predict.py` checks the fit on held-out
configs drawn from a seeded generator, disjoint from every kernel the calibration measured.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dscalc.cost.dtypes import itemsize
from dscalc.cost.layers import conv, depthwise, linear
from dscalc.cost.records import LayerCost
from dscalc.errors import say
from dscalc.measure import learned
from dscalc.measure.ceilings import (
    INVALID,
    MAX_RATE,
    BadEntry,
    cache_dir,
    default_threads,
    flag,
    get_ceilings,
    integer,
    machine_load,
    number,
    read_cache,
    shortened,
    suffix,
    text,
    warn,
    write_cache,
)
from dscalc.measure.predict import MEMORY_KINDS, UNIT_PATTERNS, Calibration, Kernel, Sample, fit_all, kernel_of
from dscalc.measure.settings import Settings, configured, device_name, torch_version

if TYPE_CHECKING:
    from dscalc.measure.timer import Timing

#: 2: small convs in the design, the in-network factor; 3: shaped samples, learned models; 4: the learned
#: models' torch_native_conv feature
CACHE_VERSION = 4
#: each calibration kernel is timed for this long at least, at most (the one timing protocol, shortened)
MIN_RUN, MAX_RUN = 0.05, 0.4
#: the default time budget of a calibration (seconds), the share of it the initial design may take (it is cut
#: beyond, keeping MIN_PER_KIND kernels of every kind), the time kept for the reference and fused-unit chains (at
#: most a share of the budget), and how many kernels adaptive sampling measures between refits (of the SCAN
#: candidates it scores each round)
BUDGET, INITIAL_SHARE, MIN_PER_KIND, CHAIN_RESERVE, RESERVE_SHARE, BATCH, SCAN = 120.0, 0.7, 3, 15.0, 0.15, 8, 240
POOL_SEED, POOL_SIZE, POOL_MACS, POOL_BYTES = 2021, 800, 1_500_000_000, 64 << 20


@dataclass(frozen=True)
class Probe:
    """One kernel of the design: what it costs and how to build it as a torch module."""

    kernel: Kernel
    input_shapes: list[tuple[int, ...]]
    build: Callable[[Any], Any]  # torch.nn -> module


def _layer_probe(layer: LayerCost) -> Probe:
    from dscalc.measure.modules import module_for  # only to measure: a cached calibration needs no torch module

    return Probe(kernel_of(layer), [layer.input_shape], lambda nn: module_for(layer))


class _Add:
    """x + y as a module (built lazily: torch is imported only when a probe runs)."""

    @staticmethod
    def build(nn: Any) -> Any:
        class Add(nn.Module):
            def forward(self, x, y):
                return x + y

        return Add()


class _Cat:
    """torch.cat((x, y), 1) as a module: the copy a concatenation makes (ShuffleNet's, SqueezeNet's fire)."""

    @staticmethod
    def build(nn: Any) -> Any:
        import torch

        class Cat(nn.Module):
            def forward(self, x, y):
                return torch.cat((x, y), 1)

        return Cat()


def memory_probe(kind: str, batch: int, channels: int, size: int, dtype: str) -> Probe:
    """A memory-bound op on a B x C x H x W tensor: its bytes (inputs read, output written) and a module. A
    `globalpool` averages each map (AdaptiveAvgPool2d(1)); a `copy` concatenates two halves of C channels."""
    n = batch * channels * size * size
    item = itemsize(dtype)
    shape = (batch, channels, size, size)
    name = f"{kind} {channels}x{size}² b{batch}"
    same = (batch, channels, channels, size * size, size * size, 1, 1, 1)
    if kind == "globalpool":
        return Probe(Kernel(name, kind, n, item * (n + batch * channels), batch, channels, channels, size * size, 1,
                            size * size, 1, 1), [shape], lambda nn: nn.AdaptiveAvgPool2d(1))
    if kind == "copy":
        part = (batch, max(channels // 2, 1), size, size)
        moved = 2 * math.prod(part)
        return Probe(Kernel(name, kind, moved, item * 2 * moved, *same), [part, part], _Cat.build)
    if kind == "batchnorm":
        # reads its input and 4 per-channel vectors, writes its output and 2 saved statistics (as traced)
        return Probe(Kernel(name, kind, 2 * n, item * (2 * n + 6 * channels), *same), [shape],
                     lambda nn: nn.BatchNorm2d(channels).eval())
    if kind == "activation":
        return Probe(Kernel(name, kind, n, item * 2 * n, *same), [shape], lambda nn: nn.ReLU())
    if kind == "transcendental":
        return Probe(Kernel(name, kind, n, item * 2 * n, *same), [shape], lambda nn: nn.SiLU())
    if kind == "add":
        return Probe(Kernel(name, kind, n, item * 3 * n, *same), [shape, shape], _Add.build)
    half = (size + 1) // 2
    out = batch * channels * half**2  # MaxPool2d(3, 2, padding=1)
    return Probe(Kernel(name, "pooling", 9 * out, item * (n + out), batch, channels, channels, size * size, half**2,
                        9, 2, 1), [shape], lambda nn: nn.MaxPool2d(3, 2, 1))


#: (channels, spatial size) pairs a CNN meets, from early wide maps to late narrow ones
_MAPS = [(16, 112), (32, 112), (24, 56), (64, 56), (128, 28), (96, 28), (256, 14), (160, 14), (512, 7), (384, 7)]


def design(dtype: str = "float32") -> list[Probe]:
    """The calibration kernels: every kind, spread over the maps above, batch 1 and 8 (fixed, deterministic)."""
    probes: list[Probe] = []
    for i, (c, s) in enumerate(_MAPS):
        b = 8 if i % 3 == 2 else 1
        k = (3, 5, 7)[i % 3]
        stride = 2 if i % 4 == 1 else 1
        dm = 2 if i % 5 == 3 else 1
        probes.append(_layer_probe(depthwise(c, k, s, depth_multiplier=dm, stride=stride, padding="same", batch=b,
                                             dtype=dtype, name=f"dw k{k}/s{stride}/dm{dm} {c}x{s}² b{b}")))
        cout = (c * 2, c, c // 2 if c >= 32 else c * 4)[i % 3]
        probes.append(_layer_probe(conv(c, cout, 1, s, batch=b, dtype=dtype, name=f"pw {c}->{cout} {s}² b{b}")))
        if s <= 56:  # full 3x3/5x5 convs on 112² maps take seconds on a CPU: the model extrapolates in FLOPs
            kk = (3, 3, 5)[i % 3]
            probes.append(_layer_probe(conv(c, cout, kk, s, batch=b, padding="same", stride=stride, dtype=dtype,
                                            name=f"conv k{kk}/s{stride} {c}->{cout} {s}² b{b}")))
            g = 4 if c % 4 == 0 and cout % 4 == 0 else 2
            probes.append(_layer_probe(conv(c, cout, 3, s, groups=g, batch=b, padding="same", dtype=dtype,
                                            name=f"gconv g{g} {c}->{cout} {s}² b{b}")))
        if s <= 28:
            probes.append(_layer_probe(conv(c, c // 2, 4, s, stride=2, padding=1, transposed=True, batch=b,
                                            dtype=dtype, name=f"tconv k4/s2 {c}->{c // 2} {s}² b{b}")))
        probes.append(memory_probe(MEMORY_KINDS[i % 7], b, c, s, dtype))
        probes.append(memory_probe(MEMORY_KINDS[(i + 3) % 7], 1 + 7 * (i % 2), c, s, dtype))
    # the memory-bound ops of late, narrow maps at batch 1 (squeeze-excite pools, norms of 7x7 maps): where the
    # fixed cost of an eager op decides, as in a MobileNetV3 or EfficientNet
    for i, (c, s) in enumerate([(16, 56), (40, 28), (96, 14), (120, 28), (240, 14), (576, 7), (672, 7), (1024, 7),
                                (1280, 7), (72, 56)]):
        probes += [memory_probe(kind, 1, c, s, dtype) for kind in ("batchnorm", "globalpool", "copy")]
        probes.append(memory_probe(("activation", "transcendental", "add", "pooling")[i % 4], 1, c, s, dtype))
    # small convs (few channels, small maps): where the fixed cost decides and a separable pair can lose
    for c, k, s, b in [(24, 3, 28, 1), (64, 5, 14, 2)]:  # depth multiplier 2: with the maps' two, four of them
        probes.append(_layer_probe(depthwise(c, k, s, depth_multiplier=2, padding="same", batch=b, dtype=dtype,
                                             name=f"dw k{k}/s1/dm2 {c}x{s}² b{b}")))
    for cin, cout, kk, s, b, stride in [(8, 16, 3, 7, 1, 1), (16, 16, 5, 14, 2, 1), (12, 24, 3, 28, 1, 2),
                                        (32, 16, 7, 7, 4, 1), (16, 32, 3, 20, 8, 1), (24, 12, 7, 14, 1, 2)]:
        probes.append(_layer_probe(conv(cin, cout, kk, s, batch=b, padding=kk // 2, stride=stride, dtype=dtype,
                                        name=f"conv k{kk}/s{stride} {cin}->{cout} {s}² b{b}")))
        probes.append(_layer_probe(depthwise(cin, kk, s, batch=b, padding=kk // 2, stride=stride, dtype=dtype,
                                             name=f"dw k{kk}/s{stride}/dm1 {cin}x{s}² b{b}")))
        probes.append(_layer_probe(conv(cin, cout, 1, s, batch=b, dtype=dtype, name=f"pw {cin}->{cout} {s}² b{b}")))
    # batch-1 convs of late maps whose input holds at most 20,480 elements: torch runs these on its native kernel,
    # not oneDNN's, at rates up to 3x apart (`learned.torch_native_conv`); the pool draws few
    for cin, cout, kk, s in [(96, 24, 1, 14), (160, 960, 1, 7), (384, 96, 1, 7), (48, 48, 3, 14), (24, 40, 3, 28),
                             (320, 160, 3, 7)]:
        kind = "pw" if kk == 1 else "conv k3/s1"
        probes.append(_layer_probe(conv(cin, cout, kk, s, padding=kk // 2, dtype=dtype,
                                        name=f"{kind} {cin}->{cout} {s}² b1")))
    for n_in, n_out, rows in [(512, 1000, 1), (1280, 1000, 1), (256, 256, 64), (768, 3072, 197), (2048, 1000, 8),
                              (128, 512, 1024), (64, 64, 1), (1024, 4096, 16)]:
        probes.append(_layer_probe(linear(n_in, n_out, batch=rows, bias=False, dtype=dtype,
                                          name=f"linear {n_in}->{n_out} x{rows}")))
    return probes


def _chain(layers: list[LayerCost], dtype: str) -> list[Probe]:
    """A chain of layers, each followed by batch norm and an activation, as probes that feed one another."""
    probes = []
    for layer in layers:
        b, c, h = layer.output_shape[0], layer.output_shape[1], layer.output_shape[2]
        probes += [_layer_probe(layer), memory_probe("batchnorm", b, c, h, dtype), memory_probe("activation", b, c, h,
                                                                                                   dtype)]
    return probes


def reference_layers(dtype: str = "float32") -> dict[str, list[LayerCost]]:
    """Five reference networks, batch 1, each a chain of the design's kinds (every layer then followed by batch
    norm and ReLU): MobileNet-like (depthwise + pointwise blocks) and ResNet-like (3x3 convs), each at two scales -
    small maps that stay in cache, and a 224² input whose early maps (112², 56²) do not - and a MobileNet-like at
    32², whose kernels are so small that what each costs beyond its time alone decides. Synthetic: disjoint from
    any model a benchmark checks."""
    out = {}
    for name, (stem_c, stem_in, first, channels, blocks) in {
            "mobilenet-like": (16, 128, 64, 16, [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1),
                                                 (512, 2)]),
            "mobilenet-like at 224²": (32, 224, 112, 32, [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                                                          (512, 1), (512, 1), (1024, 2)]),
            "mobilenet-like at 32²": (16, 32, 16, 16, [(24, 1), (32, 2), (32, 1), (64, 2), (64, 1), (96, 1), (160, 2),
                                                       (160, 1), (320, 1)])}.items():
        layers, size, c = [conv(3, stem_c, 3, stem_in, stride=2, padding=1, name="stem", dtype=dtype)], first, channels
        for cout, stride in blocks:
            dw = depthwise(c, 3, size, stride=stride, padding=1, name=f"dw {c}x{size}²", dtype=dtype)
            size = dw.output_shape[2]
            layers += [dw, conv(c, cout, 1, size, name=f"pw {c}->{cout} {size}²", dtype=dtype)]
            c = cout
        out[name] = layers
    for name, stem, size, c, blocks in [
            ("resnet-like", conv(3, 32, 3, 112, stride=2, padding=1, name="stem", dtype=dtype), 56, 32,
             [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]),
            ("resnet-like at 224²", conv(3, 64, 7, 224, stride=4, padding=3, name="stem", dtype=dtype), 56, 64,
             [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)])]:
        layers = [stem]
        for cout, stride in blocks:
            layer = conv(c, cout, 3, size, stride=stride, padding=1, name=f"conv {c}->{cout} {size}²", dtype=dtype)
            layers.append(layer)
            size, c = layer.output_shape[2], cout
        out[name] = layers
    return out


def chains(dtype: str = "float32") -> dict[str, list[Probe]]:
    """The reference networks (`reference_layers`) as probes. Timed whole, against their kernels predicted alone,
    they give the in-network factor and the network terms (`measure.fusion.fit_network`)."""
    return {name: _chain(layers, dtype) for name, layers in reference_layers(dtype).items()}


def measure_chain(probes: list[Probe], settings: Settings) -> Timing:
    from torch import nn

    from dscalc.measure.modules import time_module

    return time_module(nn.Sequential(*(p.build(nn) for p in probes)), probes[0].input_shapes, settings,
                       f"chain of {len(probes)}", own=True)


def measure_probe(probe: Probe, settings: Settings) -> Timing:
    from torch import nn

    from dscalc.measure.modules import time_module

    return time_module(probe.build(nn), probe.input_shapes, settings, probe.kernel.name, own=True)


#: channels, spatial sizes and batches of the candidate pool: the widths mobile and residual networks use, many
#: not a multiple of the vector width (where oneDNN's blocking changes a kernel's efficiency)
_POOL_CHANNELS = [3, 8, 12, 16, 20, 24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 120, 128, 144, 160, 192, 240, 256,
                  320, 384, 480, 512, 576, 672, 768, 960, 1024]
_POOL_SIZES = [7, 8, 10, 14, 16, 20, 28, 32, 40, 56, 64, 80, 112]
_POOL_BATCHES = [1, 1, 1, 2, 4, 8, 16]
#: how often each kind is drawn: the convolutions a separable comparison decides on most
_POOL_KINDS = ["depthwise"] * 3 + ["pointwise"] * 3 + ["standard"] * 3 + ["grouped", "transposed", "linear",
                                                                             *MEMORY_KINDS]


def candidates(dtype: str = "float32", seed: int = POOL_SEED, n: int = POOL_SIZE) -> list[Probe]:
    """The pool adaptive sampling draws from: n distinct kernels of every kind from a seeded generator, each
    small enough to time in a fraction of a second (at most POOL_MACS MACs and POOL_BYTES bytes)."""
    rng = random.Random(seed)
    probes: list[Probe] = []
    seen: set[str] = set()
    while len(probes) < n:
        kind = rng.choice(_POOL_KINDS)
        cin, cout = rng.choice(_POOL_CHANNELS), rng.choice(_POOL_CHANNELS)
        s, b = rng.choice(_POOL_SIZES), rng.choice(_POOL_BATCHES)
        k, stride = rng.choice((3, 3, 5, 7)), rng.choice((1, 1, 2))
        if kind == "depthwise":
            dm = rng.choice((1, 1, 1, 2))
            layer = depthwise(cin, k, s, depth_multiplier=dm, stride=stride, padding=k // 2, batch=b, dtype=dtype,
                              name=f"dw k{k}/s{stride}/dm{dm} {cin}x{s}² b{b}")
        elif kind == "pointwise":
            layer = conv(cin, cout, 1, s, stride=stride, batch=b, dtype=dtype,
                         name=f"pw{'/s2' if stride == 2 else ''} {cin}->{cout} {s}² b{b}")
        elif kind == "standard":
            layer = conv(cin, cout, k, s, stride=stride, padding=k // 2, batch=b, dtype=dtype,
                         name=f"conv k{k}/s{stride} {cin}->{cout} {s}² b{b}")
        elif kind == "grouped":
            g = rng.choice((2, 4, 8, 16))
            if cin % g or cout % g or cin == g:
                continue
            layer = conv(cin, cout, 3, s, groups=g, stride=stride, padding=1, batch=b, dtype=dtype,
                         name=f"gconv g{g}/s{stride} {cin}->{cout} {s}² b{b}")
        elif kind == "transposed":
            layer = conv(cin, cout, (2, 4)[stride - 1] if k == 3 else 4, min(s, 56), stride=2, padding=1,
                         transposed=True, batch=b, dtype=dtype, name=f"tconv s2 {cin}->{cout} {min(s, 56)}² b{b}")
        elif kind == "linear":
            rows = rng.choice((1, 1, 4, 8, 16, 64, 197, 256))
            layer = linear(cin, cout, batch=rows, bias=False, dtype=dtype, name=f"linear {cin}->{cout} x{rows}")
        else:
            probe = memory_probe(kind, b, cin, s, dtype)
            if probe.kernel.name not in seen and probe.kernel.bytes <= POOL_BYTES:
                seen.add(probe.kernel.name)
                probes.append(probe)
            continue
        if layer.name in seen or layer.macs > POOL_MACS or layer.bytes > POOL_BYTES or layer.macs == 0:
            continue
        seen.add(layer.name)
        probes.append(_layer_probe(layer))
    return probes


def _round_robin(probes: list[Probe]) -> list[Probe]:
    """The design in an order that covers every kind early (it is cut there when the budget is short)."""
    by_kind: dict[str, list[Probe]] = {}
    for p in probes:
        by_kind.setdefault(p.kernel.kind, []).append(p)
    queues = list(by_kind.values())
    out = []
    for i in range(max(map(len, queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


class _Ticks:
    """A time-based progress bar: `total` ticks spread over `seconds`, ending at the budget."""

    def __init__(self, progress: Callable[[], Any] | None, total: int, seconds: float) -> None:
        self.progress, self.total, self.done, self.start = progress, total, 0, time.perf_counter()
        self.per_tick = seconds / total

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, to: float | None = None) -> None:
        due = self.total if to is None else min(int(to / self.per_tick), self.total)
        while self.progress is not None and self.done < due:
            self.progress()
            self.done += 1

    def tick(self) -> None:
        self(self.elapsed())


_SAID: set[str] = set()


def _note_once(text: str) -> None:
    if text not in _SAID:
        _SAID.add(text)
        say(f"dscalc: note: {text}")


def _pick(pool: list[Probe], models: dict[str, Any], forests: dict[str, learned.Forest], n: int,
          have: dict[str, int] | None = None, native: int = 0) -> list[Probe]:
    """The next n candidates to measure (`native`: the calibration's `learned.native_threads`, as the forests'
    features take it): a kind without a linear model first (it needs samples); then each pick goes to the kind
    furthest behind its share of the samples (its share of the pool - the pool draws the
    convolutions most - against `have`, the kernels of each kind measured so far, design included), and within
    a kind to the candidate the models are least sure of: the largest spread in log time, the per-tree
    predictions' standard deviation where a forest was kept, else the line's own residual spread (its 10th-90th
    percentile, as a standard deviation: / 2.56). Stratified so that no kind starves: picked by uncertainty
    alone, a kind whose few design kernels happened to fit its line (depthwise: 14 within 9%) was never sampled
    again, and held-out depthwise kernels came out 43% within 25%."""
    queues: dict[str, list[tuple[float, int]]] = {}
    for i, p in enumerate(pool):
        model, forest = models.get(p.kernel.kind), forests.get(p.kernel.kind)
        if model is None:
            score = math.inf
        elif forest is None:
            score = math.log(max(model.spread[1], 1.0) / min(model.spread[0], 1.0)) / 2.56
        else:
            score = forest.spread(p.kernel, max(sum(model.terms(p.kernel)), 1e-9), native)
        queues.setdefault(p.kernel.kind, []).append((-score, i))
    for q in queues.values():
        q.sort(reverse=True)  # popped from the end: the largest spread first
    share = {kind: len(q) / len(pool) for kind, q in queues.items()}
    taken = dict(have or {})
    out = [pool[queues[kind].pop()[1]] for kind in queues if kind not in models]
    while len(out) < n and any(queues.values()):
        total = sum(taken.get(kind, 0) for kind in share) + 1
        kind = max((k for k, q in queues.items() if q),
                   key=lambda k: (share[k] * total - taken.get(k, 0), -queues[k][-1][0]))
        out.append(pool[queues[kind].pop()[1]])
        taken[kind] = taken.get(kind, 0) + 1
    return out[:n]


def calibrate(settings: Settings, progress: Callable[[], Any] | None = None, budget: float = BUDGET,
              *, seed: int = POOL_SEED) -> Calibration:
    """Measure the initial design on this device under `settings`, then (with scikit-learn) adaptive samples
    until `budget` seconds have passed (shortened as much as $DSCALC_MAX_RUN_TIME shortens each measurement), fit
    the linear and learned models, and cache them. `progress` is called once per elapsed second of the budget
    (probe_count(budget) calls in all)."""
    import torch

    ticks = _Ticks(progress, probe_count(settings.dtype, budget), budget)
    cap = shortened(MAX_RUN)
    if cap is not None:  # $DSCALC_MAX_RUN_TIME shortens every measurement: the budget shrinks as much
        budget = budget * cap / MAX_RUN
        ticks.per_tick *= cap / MAX_RUN
    quick = replace(settings, min_run_time=MIN_RUN, max_run_time=MAX_RUN)
    threads = settings.threads or torch.get_num_threads()
    ceilings = get_ceilings(settings.device, threads=threads)[0]
    load = machine_load()
    start = time.time()
    samples: list[Sample] = []
    can_learn = learned.available()
    if not can_learn:
        _note_once(f"scikit-learn is not installed: calibrating the linear model only ({learned.INSTALL})")

    def measure(probe: Probe) -> None:
        t = measure_probe(probe, quick)
        if t.median:
            samples.append(Sample(probe.kernel, t.median))
        ticks.tick()

    reserve = min(CHAIN_RESERVE, RESERVE_SHARE * budget)  # for the chains, timed after the sampling
    initial = _round_robin(design(settings.dtype))
    minimum = MIN_PER_KIND * len({p.kernel.kind for p in initial})
    adaptive = 0
    with configured(quick):
        for i, probe in enumerate(initial):
            if i >= minimum and ticks.elapsed() > budget * INITIAL_SHARE:
                break
            measure(probe)
        models = fit_all(samples)
        native = learned.native_threads(settings.device, settings.runtime, settings.dtype, threads)
        forests = learned.fit_learned(samples, models, seed, native_threads=native) if can_learn else {}
        if can_learn:
            measured = {p.kernel.name for p in initial}
            pool = [p for p in candidates(settings.dtype, seed) if p.kernel.name not in measured]
            rng = random.Random(seed)
            while pool and ticks.elapsed() < budget - reserve:
                # score a seeded sample of the pool (scoring all of it in pure Python costs more than measuring)
                scan = rng.sample(pool, min(len(pool), SCAN))
                changed = set()
                have = Counter(x.kernel.kind for x in samples)
                for probe in _pick(scan, models, forests, BATCH, have, native):
                    pool.remove(probe)
                    if ticks.elapsed() >= budget - reserve:
                        break
                    measure(probe)
                    changed.add(probe.kernel.kind)
                    adaptive += 1
                models = fit_all(samples)
                # a changed kind's forest goes with its old line (it learned that line's residuals): refitted, or
                # none where the new one does not beat the new line
                forests = {k: f for k, f in forests.items() if k not in changed}
                forests.update(learned.fit_learned([s for s in samples if s.kernel.kind in changed], models, seed,
                                                   native_threads=native))
        cal = Calibration(settings.device, device_name(settings.device, threads), threads, settings.dtype,
                          settings.channels_last, settings.runtime, torch.__version__, start,
                          0.0, ceilings.peak_flops.get(settings.dtype), models, load, learned=forests,
                          samples=tuple(samples), budget=budget, adaptive=adaptive)
        from dscalc.measure import fusion

        ratios, timed = [], []
        for layers in reference_layers(settings.dtype).values():
            probes = _chain(layers, settings.dtype)
            # the kernels the runtime runs of the chain (ONNX Runtime folds its batch norms, fuses its ReLUs)
            running = fusion.running_kernels(fusion.conv_chain_ops(layers), settings.runtime, settings.dtype)
            try:
                predicted = sum(cal.predict(p.kernel).seconds for p in probes)
                alone = sum(cal.predict(k).seconds for k in running)
            except KeyError:  # a kind the design did not calibrate
                continue
            t = measure_chain(probes, quick)
            ticks.tick()
            if t.median and predicted > 0:
                ratios.append(t.median / predicted)
                timed.append((t.median, alone, sum(k.bytes for k in running), len(running)))
    factor = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 1.0
    cal = replace(cal, in_network=factor, tf32=settings.tf32 and settings.device.startswith("cuda"),
                  max_run_time=shortened(MAX_RUN))
    bandwidth, overhead = fusion.fit_network(timed)
    cal = replace(cal, network_bandwidth=bandwidth, network_overhead=overhead)
    cal = _with_units(cal, quick, ticks.tick)  # the fused units' chains, in the time kept for chains
    ticks()
    cal = replace(cal, seconds=time.time() - start)
    save(cal)
    return cal


def _with_units(cal: Calibration, settings: Settings, progress: Callable[[], Any] | None) -> Calibration:
    """The calibration with its fused-unit factors (`measure.fusion`), learned from short chains timed whole (their
    time counted in the calibration's)."""
    from dscalc.measure.fusion import calibrate_units

    with configured(settings):
        return replace(cal, units=calibrate_units(cal, settings, progress))


def probe_count(dtype: str = "float32", budget: float = BUDGET) -> int:
    """The length of a calibration's progress bar: one tick per second of its time budget."""
    return max(int(budget), 1)


# ---------------------------------------------------------------------------------------------------- cache

def cache_path() -> Any:
    return cache_dir() / "calibration.json"


def key(device: str, name: str, threads: int, dtype: str, channels_last: bool, runtime: str, torch: str,
        tf32: bool = False, max_run_time: float | None = None) -> str:
    return (f"{device}:{name}:{threads}t:{dtype}:{'cl' if channels_last else 'nchw'}:{runtime}:torch-{torch}"
            + (":tf32" if tf32 else "") + suffix(max_run_time))


def _read(quiet: bool = False) -> dict[str, Any]:
    return read_cache(cache_path(), CACHE_VERSION, quiet)


def save(cal: Calibration) -> bool:
    """Cache the calibration; False where the cache could not be written (said on stderr; not an error)."""
    data = {k: v for k, v in _read(quiet=True).items() if k not in INVALID}  # a bad entry goes with the next write
    data[key(cal.device, cal.name, cal.threads, cal.dtype, cal.channels_last, cal.runtime, cal.torch,
             cal.tf32, cal.max_run_time)] = cal.to_dict()
    return write_cache(cache_path(), data) is None


def checked(entry: Any) -> Calibration:
    """A cache entry as a Calibration, every value checked first (type, finite, positive, in range): a bad one
    raises BadEntry, and is measured again rather than shown ("-1.0 GFLOP/s", "calibrated nanx") or divided by."""
    if not isinstance(entry, dict):
        raise BadEntry(f"expected an object, got {type(entry).__name__}")
    for name in ("device", "name", "dtype", "runtime", "torch"):
        text(entry, name)
    integer(entry, "threads", 1, 1 << 16)
    flag(entry, "channels_last")
    flag(entry, "tf32")
    number(entry, "measured_at", low=0.0)
    number(entry, "seconds", low=0.0, hi=1e7)
    number(entry, "peak_flops", hi=MAX_RATE, optional=True)
    number(entry, "load", low=0.0, hi=1e6, optional=True)
    number(entry, "in_network", hi=1e3, optional=True)
    number(entry, "network_bandwidth", hi=MAX_RATE, optional=True)
    number(entry, "network_overhead", hi=1.0, optional=True)
    number(entry, "max_run_time", optional=True)
    _checked_units(entry.get("units", {}))
    models = entry.get("models")
    if not isinstance(models, dict) or len(models) > 64:
        raise BadEntry("models: expected an object of kernel kinds")
    for kind, m in models.items():
        if not isinstance(m, dict):
            raise BadEntry(f"models.{kind}: expected an object")
        try:
            if m.get("kind") != kind:
                raise BadEntry(f"kind: expected {kind!r}")
            number(m, "fixed_s", low=0.0, hi=1e3)
            number(m, "flop_per_s", hi=MAX_RATE, optional=True)
            number(m, "byte_per_s", hi=MAX_RATE, optional=True)
            integer(m, "samples", 0, 1 << 20) if "samples" in m else None
            number(m, "median_error", low=0.0, hi=1e6, optional=True)
            number(m, "ratio_q10", hi=1e6, optional=True)
            number(m, "ratio_q90", hi=1e6, optional=True)
        except BadEntry as e:
            raise BadEntry(f"models.{kind}.{e}") from None
    number(entry, "budget", hi=1e7, optional=True)
    if "adaptive" in entry:
        integer(entry, "adaptive", 0, 1 << 20)
    forests = entry.get("learned", {})
    if not isinstance(forests, dict) or len(forests) > 64:
        raise BadEntry("learned: expected an object of kernel kinds")
    built = {}  # built once, here (checking a forest is most of the time reading a cached calibration takes)
    for kind, f in forests.items():
        try:
            built[kind] = learned.Forest.from_dict(f)
        except learned.BadForest as e:
            raise BadEntry(f"learned.{kind}: {e}") from None
        if built[kind].kind != kind:
            raise BadEntry(f"learned.{kind}: kind: expected {kind!r}")
    if not isinstance(entry.get("samples", []), list) or len(entry.get("samples", [])) > 1 << 16:
        raise BadEntry("samples: expected a list of measured kernels")
    try:
        return Calibration.from_dict(entry, built)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise BadEntry(f"{type(e).__name__}: {e}") from None


def _checked_units(units: Any) -> None:
    """The fused-unit factors: an object of known patterns, each a finite factor in (0, 1000]."""
    if not isinstance(units, dict):
        raise BadEntry("units: expected an object of unit patterns")
    for pattern in units:
        if pattern not in UNIT_PATTERNS:
            raise BadEntry(f"units: unknown pattern {str(pattern)[:24]!r}")
        try:
            number(units, pattern, hi=1e3)
        except BadEntry as e:
            raise BadEntry(f"units.{e}") from None


def load_cached(settings: Settings) -> Calibration | None:
    """The calibration for these settings, if one was made: a full one, else (under $DSCALC_MAX_RUN_TIME) one
    shortened as much. An invalid entry is treated as absent, and said on stderr naming the cache file. Imports no
    torch on a CPU (the thread count and torch's version are known without it: `ceilings.default_threads`)."""
    threads = settings.threads or default_threads()
    data = _read()
    tf32 = settings.tf32 and settings.device.startswith("cuda")
    parts = (settings.device, device_name(settings.device, threads), threads, settings.dtype,
             settings.channels_last, settings.runtime, torch_version(), tf32)
    for k in dict.fromkeys([key(*parts), key(*parts, shortened(MAX_RUN))]):
        entry = data.get(k)
        if entry is None:
            continue
        try:
            return checked(entry)
        except BadEntry as e:
            warn(cache_path(), f"the calibration {k} is invalid ({e}); not used (dscalc device --calibrate "
                 "measures it again)")
            INVALID.add(k)
    return None


def get_calibration(settings: Settings, refresh: bool = False, progress: Callable[[], Any] | None = None,
                    budget: float = BUDGET) -> tuple[Calibration, bool]:
    """The cached calibration for these settings, or a new one (measured now, in about `budget` seconds); and
    whether it was cached."""
    if not refresh:
        cached = load_cached(settings)
        if cached is not None:
            return cached, True
    return calibrate(settings, progress, budget), False

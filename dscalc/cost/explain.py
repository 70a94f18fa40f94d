"""`dscalc explain`: one convolution worked by hand on small numbers - every output cell as its explicit sum of
products - in exact arithmetic (fractions), pure Python, no torch.

The example follows Keras' layout, as the articles that teach convolutions by hand do: the input is (H, W, C),
filled 0.1, 0.2, 0.3, ... in that (C-order) order; a kernel is in Keras' kernel layout - Conv2D (kh, kw, in/g, out),
DepthwiseConv2D (kh, kw, in, dm), SeparableConv2D's pointwise (1, 1, in*dm, out), Conv2DTranspose (kh, kw, out, in) -
filled 1, 2, 3, ... (or, with random values, one-decimal inputs in -0.9..0.9 and integer weights in -9..9, drawn
from Python's `random.Random(seed)`). No bias.

The geometry (padding pairs, output size, output padding) and the MAC count come from the layer engine
(`LayerSpec` -> `kinds.KINDS`): every cell here sums the products the engine counts. A forward conv multiplies the
zeros of its padding too, so those products are kept as terms (marked `padded`): products per cell x output cells
is then exactly the engine's MACs. A transposed conv scatters each input value over its kernel; the engine counts
every one of those products, including any that fall outside the output (cropped by padding), which are counted
in `Stage.outside`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from itertools import product

from dscalc.cost.kinds import KINDS
from dscalc.cost.records import LayerCost
from dscalc.cost.spec import LayerSpec
from dscalc.errors import BadInput

#: what fits a screen: input and output at most 8x8, kernels at most 5x5, at most 4 channels in, out or between
MAX_SIZE = 8
MAX_KERNEL = 5
MAX_CHANNELS = 4
#: the kinds explained (every convolution kind; a dense layer is a 1x1 conv on a 1x1 input)
EXPLAINED = ("standard", "grouped", "depthwise", "pointwise", "separable", "transposed")
VALUES = ("counting", "random")

Index = tuple[int, ...]


@dataclass(frozen=True)
class Tensor:
    """A small tensor in Keras' layout: its shape and its values, flat in C order (last index fastest)."""

    shape: Index
    values: tuple[Fraction, ...]

    def __getitem__(self, index: Index) -> Fraction:
        flat = 0
        for i, n in zip(index, self.shape):
            flat = flat * n + i
        return self.values[flat]

    def nested(self) -> list:
        """The values as nested lists, outermost index first (what JSON carries, as numbers)."""
        def level(offset: int, dims: Index) -> list:
            if len(dims) == 1:
                return [float(v) for v in self.values[offset: offset + dims[0]]]
            step = 1
            for n in dims[1:]:
                step *= n
            return [level(offset + i * step, dims[1:]) for i in range(dims[0])]
        return level(0, self.shape)


def _filled(shape: Index, values: list[Fraction]) -> Tensor:
    return Tensor(shape, tuple(values))


@dataclass(frozen=True)
class Term:
    """One product of a cell's sum: an input value times a kernel value, with where each came from.

    `at` is the input position (y, x, c) - outside the input (and `value` 0) where it is padding; `kernel_at` the
    kernel index in Keras' layout."""

    value: Fraction
    weight: Fraction
    at: Index
    kernel_at: Index
    padded: bool = False

    @property
    def product(self) -> Fraction:
        return self.value * self.weight

    @property
    def channel(self) -> int:
        return self.at[2]


@dataclass(frozen=True)
class Cell:
    """One output value, (channel, y, x), and the products it sums."""

    channel: int
    y: int
    x: int
    terms: tuple[Term, ...]

    @cached_property
    def value(self) -> Fraction:
        return sum((t.product for t in self.terms), Fraction(0))

    def partials(self) -> list[tuple[int, Fraction]]:
        """The sum split by input channel, in channel order: [(channel, partial sum), ...]."""
        sums: dict[int, Fraction] = {}
        for t in self.terms:
            sums[t.channel] = sums.get(t.channel, Fraction(0)) + t.product
        return sorted(sums.items())


@dataclass(frozen=True)
class Stage:
    """One convolution of the example (a separable conv has two: depthwise, then pointwise)."""

    name: str  # standard, grouped, depthwise, pointwise, transposed
    layer: LayerCost  # the engine's cost of it
    input: Tensor  # (H, W, C)
    kernel: Tensor  # Keras' kernel layout
    kernel_layout: str  # the names of the kernel's axes, e.g. "(kh, kw, in, out)"
    cells: dict[Index, Cell] = field(repr=False)  # (channel, y, x) -> cell

    @cached_property
    def output(self) -> Tensor:
        """The output, (H, W, C)."""
        _, c, h, w = self.layer.output_shape
        return _filled((h, w, c), [self.cells[(o, y, x)].value for y, x, o in product(range(h), range(w), range(c))])

    @property
    def products(self) -> int:
        """Every product this stage's cells sum (padding included)."""
        return sum(len(c.terms) for c in self.cells.values())

    @property
    def outside(self) -> int:
        """Products the engine counts that land in no output cell (a transposed conv's cropped border)."""
        return self.layer.macs - self.products

    @property
    def per_cell(self) -> tuple[int, int]:
        """The fewest and most products one cell sums (the same for a forward conv)."""
        counts = [len(c.terms) for c in self.cells.values()]
        return min(counts), max(counts)


@dataclass(frozen=True)
class Example:
    """The worked example: its stages (one, or depthwise + pointwise), and for a separable conv the standard conv
    it replaces (same geometry), to show the saving."""

    kind: str
    values: str  # counting or random
    seed: int | None
    stages: tuple[Stage, ...]
    standard: LayerCost | None = None  # the standard conv a separable one replaces

    @property
    def input(self) -> Tensor:
        return self.stages[0].input

    @property
    def output(self) -> Tensor:
        return self.stages[-1].output

    @property
    def macs(self) -> int:
        return sum(s.layer.macs for s in self.stages)

    def cell(self, channel: int, y: int, x: int, stage: int = -1) -> Cell:
        """One output cell of a stage (the last by default), checked against the output's shape."""
        chosen = self.stages[stage]
        h, w, c = chosen.output.shape
        if not (0 <= channel < c and 0 <= y < h and 0 <= x < w):
            raise BadInput(f"{channel},{y},{x} is outside the output (channels 0..{c - 1}, y 0..{h - 1}, "
                           f"x 0..{w - 1})", "cell")
        return chosen.cells[(channel, y, x)]


# --------------------------------------------------------------------------------------------- building

def layers_of(spec: LayerSpec) -> tuple[list[LayerCost], LayerCost | None]:
    """The engine's layers of the kind (a separable conv: depthwise, pointwise) and, for a separable conv, the
    standard conv it replaces; checked to be a 2D conv small enough to draw."""
    if spec.kind not in EXPLAINED:
        raise BadInput(f"explain works through a convolution: one of {', '.join(EXPLAINED)}", "kind")
    a = spec.args
    if a.bias:
        raise BadInput("explain draws convolutions without a bias", "bias")
    if a.batch != 1:
        raise BadInput("explain draws one example (batch 1)", "batch")
    if spec.kind == "transposed" and a.groups != 1:
        raise BadInput("explain draws a transposed conv with groups 1 (Keras Conv2DTranspose)", "groups")
    layers = KINDS[spec.kind].build(a)
    if len(layers[0].kernel) != 2:
        raise BadInput(f"explain draws 2D convolutions (Keras layout), got a {len(layers[0].kernel)}D layer",
                       "size" if isinstance(a.size, tuple) else "k")
    for n_layer, layer in enumerate(layers):
        _, cin, *size_in = layer.input_shape
        _, cout, *size_out = layer.output_shape
        for what, sizes in (("input", size_in), ("output", size_out)):
            if max(sizes) > MAX_SIZE:
                raise BadInput(f"explain draws inputs and outputs of at most {MAX_SIZE}x{MAX_SIZE} "
                               f"(to fit a screen); this {what} is {'x'.join(map(str, sizes))}", "size")
        if max(layer.kernel) > MAX_KERNEL:
            raise BadInput(f"explain draws kernels of at most {MAX_KERNEL}x{MAX_KERNEL} (to fit a screen), got "
                           f"{'x'.join(map(str, layer.kernel))}", "k")
        # a depthwise conv's outputs (and a separable conv's channels between its stages) are cin x depth-multiplier
        between = spec.kind == "depthwise" or (spec.kind == "separable" and n_layer == 0)
        for option, n in (("cin" if n_layer == 0 else "depth_multiplier", cin),
                          ("depth_multiplier" if between else "cout", cout)):
            if n > MAX_CHANNELS:
                raise BadInput(f"explain draws at most {MAX_CHANNELS} channels in, out or between stages (to fit "
                               f"a screen); this layer has {n}", option)
    standard = KINDS["standard"].build(a)[0] if spec.kind == "separable" else None
    return layers, standard


class _Values:
    """The values the example is filled with: counting (0.1, 0.2, ... and 1, 2, ...) or seeded random."""

    def __init__(self, values: str, seed: int | None) -> None:
        if values not in VALUES:
            raise BadInput(f"expected counting or random, got {values[:40]!r}", "values")
        if seed is not None and values != "random":
            raise BadInput("applies to --values random", "seed")
        self.rng = random.Random(seed if seed is not None else 0) if values == "random" else None

    def inputs(self, n: int) -> list[Fraction]:
        if self.rng is None:
            return [Fraction(i + 1, 10) for i in range(n)]
        return [Fraction(self.rng.randint(-9, 9), 10) for _ in range(n)]

    def weights(self, n: int, start: int = 1) -> list[Fraction]:
        if self.rng is None:
            return [Fraction(start + i) for i in range(n)]
        return [Fraction(self.rng.randint(-9, 9)) for _ in range(n)]


def _forward(layer: LayerCost, x: Tensor, kernel: Tensor, depthwise: bool) -> dict[Index, Cell]:
    """Every cell of a (grouped, depthwise or pointwise) conv: the sum over its window and its input channels,
    padding included, input channel outermost so that each channel's partial sum reads in one run."""
    _, cin, h_in, w_in = layer.input_shape
    _, cout, h_out, w_out = layer.output_shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    (ph, _), (pw, _) = layer.padding
    dm = cout // cin
    per_in, per_out = cin // layer.groups, cout // layer.groups
    cells: dict[Index, Cell] = {}
    for o, y, xx in product(range(cout), range(h_out), range(w_out)):
        # (input channel, kernel channel index) pairs that output channel o sums
        if depthwise:
            taps = [(o // dm, (o // dm, o % dm))]
        else:
            group = o // per_out
            taps = [(group * per_in + j, (j, o)) for j in range(per_in)]
        terms = []
        for ci, (a, b) in taps:
            for ky, kx in product(range(kh), range(kw)):
                iy, ix = y * sh - ph + ky * dh, xx * sw - pw + kx * dw
                inside = 0 <= iy < h_in and 0 <= ix < w_in
                terms.append(Term(x[(iy, ix, ci)] if inside else Fraction(0), kernel[(ky, kx, a, b)], (iy, ix, ci),
                                  (ky, kx, a, b), padded=not inside))
        cells[(o, y, xx)] = Cell(o, y, xx, tuple(terms))
    return cells


def _transposed(layer: LayerCost, x: Tensor, kernel: Tensor) -> dict[Index, Cell]:
    """Every cell of a transposed conv: input (iy, ix) times kernel (ky, kx) lands on output
    (iy·s + ky·d - pad_before); a cell sums what lands on it, input channel outermost."""
    _, cin, h_in, w_in = layer.input_shape
    _, cout, h_out, w_out = layer.output_shape
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    (ph, _), (pw, _) = layer.padding
    cells: dict[Index, Cell] = {}
    for o, y, xx in product(range(cout), range(h_out), range(w_out)):
        terms = []
        for ci, ky, kx in product(range(cin), range(kh), range(kw)):
            ny, nx = y + ph - ky * dh, xx + pw - kx * dw
            if ny % sh or nx % sw:
                continue
            iy, ix = ny // sh, nx // sw
            if 0 <= iy < h_in and 0 <= ix < w_in:
                terms.append(Term(x[(iy, ix, ci)], kernel[(ky, kx, o, ci)], (iy, ix, ci), (ky, kx, o, ci)))
        cells[(o, y, xx)] = Cell(o, y, xx, tuple(terms))
    return cells


def _stage(name: str, layer: LayerCost, x: Tensor, fill: _Values, start: int = 1) -> Stage:
    _, cin, *_ = layer.input_shape
    cout = layer.output_shape[1]
    kh, kw = layer.kernel
    if name == "transposed":
        shape, axes = (kh, kw, cout, cin), "(kh, kw, out, in)"
    elif name == "depthwise":
        shape, axes = (kh, kw, cin, cout // cin), "(kh, kw, in, dm)"
    else:
        shape, axes = (kh, kw, cin // layer.groups, cout), "(kh, kw, in/g, out)" if layer.groups > 1 \
            else "(kh, kw, in, out)"
    n = shape[0] * shape[1] * shape[2] * shape[3]
    kernel = _filled(shape, fill.weights(n, start))
    cells = _transposed(layer, x, kernel) if name == "transposed" else _forward(layer, x, kernel, name == "depthwise")
    return Stage(name, layer, x, kernel, axes, cells)


def example(spec: LayerSpec, *, values: str = "counting", seed: int | None = None,
            pointwise_start: int | None = None) -> Example:
    """The worked example of one layer. `pointwise_start` starts a separable conv's pointwise kernel at that
    number (counting values only; the depthwise kernel starts at 1)."""
    fill = _Values(values, seed)
    if pointwise_start is not None:
        if spec.kind != "separable":
            raise BadInput("applies to --kind separable (its pointwise kernel)", "pointwise_start")
        if values != "counting":
            raise BadInput("applies to counting values", "pointwise_start")
    layers, standard = layers_of(spec)
    first = layers[0]
    _, cin, h, w = first.input_shape
    x = _filled((h, w, cin), fill.inputs(h * w * cin))
    if spec.kind == "separable":
        dw = _stage("depthwise", layers[0], x, fill)
        pw = _stage("pointwise", layers[1], dw.output, fill, pointwise_start if pointwise_start is not None else 1)
        stages: tuple[Stage, ...] = (dw, pw)
    else:
        stages = (_stage(spec.kind, first, x, fill),)
    return Example(spec.kind, values, seed, stages, standard)

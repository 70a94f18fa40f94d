"""The one number formatter of the package: exact counts, SI prefixes, ratios, shapes, durations."""

from __future__ import annotations

from fractions import Fraction

_SI = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


def exact(n: int) -> str:
    """An exact integer with thousands separators: 462,422,016."""
    return f"{n:,}"


def si(n: int | float, digits: int = 2) -> str:
    """A count in K/M/G/T (powers of 1000): 462.42M. Below 1000 it stays as is."""
    for scale, suffix in _SI:
        if abs(n) >= scale:
            return f"{n / scale:.{digits}f}{suffix}"
    return f"{n:,}" if isinstance(n, int) else f"{n:.{digits}f}"


def binary(n: int | None, digits: int = 1) -> str:
    """A size in bytes in KiB/MiB/GiB/TiB (powers of 1024): 44.6 MiB. Below 1024 it stays as is; None is '-'."""
    if n is None:
        return "-"
    for power, suffix in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(n) >= 1024**power:
            return f"{n / 1024**power:.{digits}f} {suffix}"
    return f"{n:,} B"


def ratio(r: Fraction | float | None, digits: int = 4) -> str:
    """A ratio as a decimal: 0.1189."""
    if r is None:
        return "-"
    return f"{float(r):.{digits}f}"


def times(r: Fraction | float | None) -> str:
    """A ratio as a factor of reduction: 1/r, e.g. '8.84x'."""
    if r is None or r == 0:
        return "-"
    return f"{1 / float(r):.2f}x"


def shape(dims: tuple[int, ...] | list[int]) -> str:
    """A tensor shape as 1x64x56x56."""
    return "x".join(str(d) for d in dims)


def feature_map(dims: tuple[int, ...] | list[int]) -> str:
    """A feature map without its batch, square spatial sizes folded: (1, 64, 56, 56) -> 64x56²; a shape of one
    dimension as it is."""
    if len(dims) < 2:
        return shape(dims)
    channels, *spatial = dims[1:]
    if len(spatial) > 1 and len(set(spatial)) == 1:
        return f"{channels}x{spatial[0]}{'²' if len(spatial) == 2 else '³'}"
    return shape((channels, *spatial))


def in_out(inp: tuple[int, ...] | list[int], out: tuple[int, ...] | list[int]) -> str:
    """Input -> output feature maps: 32x112² -> 64x112²."""
    return f"{feature_map(inp)} -> {feature_map(out)}" if inp and out else ""


def seconds(s: float | None) -> str:
    """A duration in s, ms or µs with 3 significant digits."""
    if s is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def speedup(x: float | None) -> str:
    """A speedup factor: '2.21x' (> 1 means the separable version is faster)."""
    return "-" if x is None else f"{x:.2f}x"

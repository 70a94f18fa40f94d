"""Text the user typed -> checked values: per-dimension integers (3 or 3x5), padding, tensor shapes (1x3x224x224)
and value lists (32,64 or 32:512:x2). Each failure is bad input naming the option."""

from __future__ import annotations

import math
import os

from dscalc.cost import dtypes
from dscalc.errors import BadInput

#: the most values one list or range option may expand to (a sweep of more is a typo, not a plan)
MAX_VALUES = 1000

#: the largest dimension of a tensor shape given with --input (torch indexes with 64-bit integers, but no tensor
#: this large fits in any memory; the cap keeps every derived float finite)
MAX_DIM = 2**31 - 1

#: the most dimensions an --input shape may have (a video batch has 5; torch's kernels index at most 25)
MAX_RANK = 16

#: the most elements an --input tensor may have: torch computes a tensor's size in bytes as a signed 64-bit
#: integer, and at 16 bytes an element (complex128, the widest dtype) 2**59 elements is 2**63 bytes - more overflows
#: ("Storage size calculation overflowed"); about 5.8e17 elements, far beyond any memory
MAX_ELEMENTS = 2**59


def _integer(text: str) -> int:
    """An integer in plain decimal digits with an optional sign (',' separates dimensions, so no separators);
    at most 40 characters, so that no text makes int() work for long."""
    text = text.strip()
    if not text or len(text) > 40 or not text.lstrip("+-").isdigit() or not text.isascii():
        raise ValueError(text)
    return int(text)


def per_dim(text: str, option: str) -> int | tuple[int, ...]:
    """'3' -> 3; '3x5' or '3,5' -> (3, 5). A non-number is bad input naming the option."""
    parts = text.replace(",", "x").lower().split("x")
    try:
        values = tuple(_integer(p) for p in parts)
    except ValueError:
        raise BadInput(f"expected an integer or one per dimension like 3x5, got {_quote(text)}", option) from None
    return values[0] if len(values) == 1 else values


def padding(text: str) -> int | str | tuple[int, ...]:
    """'same' | 'valid' | N | NxM."""
    lowered = text.strip().lower()
    if lowered in ("same", "valid"):
        return lowered
    try:
        return per_dim(lowered, "padding")
    except BadInput:
        raise BadInput(f"expected same, valid, N or one per dimension like 1x2, got {_quote(text)}",
                       "padding") from None


def shape(text: str, option: str = "input") -> tuple[int, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224), every dimension positive and at most MAX_DIM, at most MAX_RANK of them,
    at most MAX_ELEMENTS in all."""
    try:
        dims = tuple(_integer(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise BadInput(f"expected a shape like 1x3x224x224, got {_quote(text)}", option) from None
    if not dims or any(d <= 0 for d in dims):
        raise BadInput(f"every dimension must be positive, got {_quote(text)}", option)
    if any(d > MAX_DIM for d in dims):
        raise BadInput(f"every dimension must be at most {MAX_DIM:,}, got {_quote(text)}", option)
    if len(dims) > MAX_RANK:
        raise BadInput(f"at most {MAX_RANK} dimensions, got {len(dims)}", option)
    if math.prod(dims) > MAX_ELEMENTS:
        raise BadInput(f"{math.prod(dims):.3g} elements is more than a tensor can address (at most 2**59, "
                       f"{MAX_ELEMENTS:.3g}), got {_quote(text)}", option)
    return dims


def values(text: str, option: str) -> list[int]:
    """'32,64,128' | '32:512:x2' (geometric) | '1:8' or '1:8:2' (arithmetic), inclusive; at most MAX_VALUES."""
    out: list[int] = []
    for part in text.split(","):
        try:
            out += _one_part(part.strip())
        except ValueError:
            raise BadInput(f"expected a list like 32,64 or a range like 32:512:x2 or 1:8:2, got {_quote(text)}",
                           option) from None
        if len(out) > MAX_VALUES:
            raise BadInput(f"expands to more than {MAX_VALUES} values: {_quote(text)}", option)
    if not out or any(v < 1 for v in out):
        raise BadInput(f"every value must be a positive integer, got {_quote(text)}", option)
    return out


def _one_part(part: str) -> list[int]:
    if ":" not in part:
        return [_integer(part)]
    bits = part.split(":")
    if len(bits) not in (2, 3):
        raise ValueError(part)
    lo, hi = _integer(bits[0]), _integer(bits[1])
    step = bits[2].strip() if len(bits) == 3 else "1"
    if step.startswith("x"):
        factor = _integer(step[1:])
        if factor < 2 or lo < 1:
            raise ValueError(part)
        found: list[int] = []
        v = lo
        while v <= hi and len(found) <= MAX_VALUES:
            found.append(v)
            v *= factor
        return found
    stride = _integer(step)
    if stride < 1:
        raise ValueError(part)
    count = max(0, (hi - lo) // stride + 1)
    return list(range(lo, min(hi, lo + stride * MAX_VALUES) + 1, stride)) if count else []


def env_seconds(name: str) -> float | None:
    """A duration in seconds from the environment variable `name`: None where it is unset or empty, bad input
    (one line naming the variable) where it is not a finite number > 0."""
    value = os.environ.get(name)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not (seconds > 0 and math.isfinite(seconds)):
        raise BadInput(f"{name}: expected a number of seconds > 0, got {value[:40]!r}")
    return seconds


def _quote(text: str, limit: int = 40) -> str:
    """The user's text in quotes, shortened when long (a 10**30-digit value stays one readable line)."""
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return repr(shown)


class InputSpec(tuple):
    """A --input shape that may also name the forward's keyword argument it is passed as and its element type;
    everywhere else it is the plain shape tuple."""

    name: str
    dtype: str

    def __new__(cls, dims: tuple[int, ...], name: str = "", dtype: str = "") -> InputSpec:
        spec = super().__new__(cls, dims)
        spec.name, spec.dtype = name, dtype
        return spec


#: the element types an --input may name (integers: token ids, masks, indices), from the one list of dtypes
INPUT_DTYPES = dtypes.INPUT


def input_spec(text: str, option: str = "input") -> InputSpec:
    """'1x3x224x224' | '1x128:int64' | 'input_ids=1x128:int64': a shape, optionally a keyword name and a dtype."""
    name, eq, rest = text.partition("=")
    if not eq:
        name, rest = "", text
    name = name.strip()
    if eq and not (name.isidentifier() and name.isascii()):
        raise BadInput(f"expected a keyword name like input_ids=1x128:int64, got {_quote(text)}", option)
    dims, colon, dtype = rest.rpartition(":")
    if not colon:
        dims, dtype = rest, ""
    dtype = dtype.strip().lower()
    if dtype and dtype not in INPUT_DTYPES:
        raise BadInput(f"unknown dtype {_quote(dtype)} in {_quote(text)} (one of {', '.join(INPUT_DTYPES)})", option)
    return InputSpec(shape(dims, option), name, dtype)

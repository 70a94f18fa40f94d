"""The element types dscalc knows, in one list: their bytes (for memory and intensity) and whether torch can
time a layer in them. The CLI's choices, the engine's byte counts and the timer's dtypes all come from here."""

from __future__ import annotations

from dataclasses import dataclass

from dscalc.errors import BadInput


@dataclass(frozen=True)
class DType:
    name: str  # also torch's attribute name (torch.float32, ...)
    bytes: int
    timed: bool  # a floating type torch runs convolutions in (int8 is costed only)


DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("float32", 4, True), DType("float16", 2, True), DType("bfloat16", 2, True), DType("int8", 1, False))}

#: the dtypes a layer can be timed in
TIMED = tuple(name for name, d in DTYPES.items() if d.timed)

#: the element types a model's input may have (`--input 1x128:int64`): the costed ones and the types of token ids,
#: masks and indices
INPUT = (*DTYPES, "float64", "int64", "int32", "int16", "uint8", "bool")


def itemsize(dtype: str) -> int:
    """Bytes per element of `dtype`."""
    return check(dtype).bytes


def check(dtype: str, *, timed: bool = False, option: str = "dtype") -> DType:
    """The DType of a name, or bad input naming the choices (only the timed ones when `timed`)."""
    known = DTYPES.get(dtype)
    if known is None:
        raise BadInput(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}", option)
    if timed and not known.timed:
        raise BadInput(f"timing runs {', '.join(TIMED)}, not {dtype}", option)
    return known

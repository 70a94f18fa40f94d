"""What tracing produces, as plain records (no torch): every counted op of one forward pass, and the per-module
rows a profile shows. ONNX and Keras models produce the same records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dscalc.cost.records import LayerCost


@dataclass
class OpRecord:
    """One aten op as the model ran it."""

    module: str  # path of the innermost module that issued it ("" = the model itself)
    op: str
    kind: str  # conv | linear | matmul | batchnorm | pooling | elementwise | other
    macs: int
    elements: int  # output elements
    layer: LayerCost | None = None  # a convolution's record (so its separable what-if is one call away)


@dataclass
class Trace:
    """What one forward pass did: every counted op, and the names of ops that were not counted."""

    records: list[OpRecord]
    uncounted: dict[str, int]
    module_types: dict[str, str]
    module_params: dict[str, int]  # own parameters of each module (not its children's)
    params: int
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)


@dataclass
class ProfileRow:
    name: str
    type: str
    kind: str
    params: int
    macs: int
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    geometry: str = ""
    separable: dict[str, int] | None = None  # what-if params/macs, for standard convs with k > 1
    fvcore: int | None = None
    fvcore_ops: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "type": self.type, "kind": self.kind, "params": self.params,
                               "macs": self.macs, "flops": 2 * self.macs,
                               "input_shape": list(self.input_shape), "output_shape": list(self.output_shape)}
        if self.geometry:
            row["geometry"] = self.geometry
        if self.separable is not None:
            row["separable"] = self.separable
        if self.fvcore is not None:
            row["fvcore"] = self.fvcore
        return row


@dataclass
class ProfileResult:
    rows: list[ProfileRow]
    totals: dict[str, int]
    by_op_kind: dict[str, dict[str, int]]
    uncounted: dict[str, int]
    inputs: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    layers: list[Any] = field(default_factory=list)  # LayerCost of every traced convolution, in order
    fvcore: dict[str, Any] | None = None

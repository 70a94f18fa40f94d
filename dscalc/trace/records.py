"""What tracing produces, as plain records (no torch): every counted op of one forward pass, and the per-module
rows a profile shows. ONNX and Keras models produce the same records.

Sizes are kept as element counts where their width follows `--dtype` (floating tensors: the trace runs in
float32 as a stand-in for any floating type) and as bytes where the width is the tensor's own (int8 weights of a
quantized layer, integer indices, masks), so bytes at any dtype are one multiplication away."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dscalc.cost.dtypes import itemsize
from dscalc.cost.records import LayerCost


@dataclass(frozen=True)
class Size:
    """A size in floating elements (at the profile's dtype) plus bytes of fixed width."""

    elements: int = 0
    fixed_bytes: int = 0

    def bytes(self, dtype: str) -> int:
        return self.elements * itemsize(dtype) + self.fixed_bytes

    def __add__(self, other: Size) -> Size:
        return Size(self.elements + other.elements, self.fixed_bytes + other.fixed_bytes)


@dataclass
class OpRecord:
    """One aten op as the model ran it."""

    module: str  # path of the innermost module that issued it ("" = the model itself)
    op: str
    kind: str  # one of dscalc.cost.opkinds.OP_KINDS
    macs: int
    elements: int  # output elements
    layer: LayerCost | None = None  # a convolution's record (so its separable what-if is one call away)
    bias_adds: int = 0  # additions of a bias (or of addmm's `self`) beside the MACs
    reads: Size = field(default_factory=Size)  # its tensor inputs (and packed weights), each read once
    writes: Size = field(default_factory=Size)  # its outputs, each written once
    mac_dtype: str = ""  # the element type of its multiplies when the op fixes it (int8: quantized kernels)
    calls: tuple[tuple[str, int], ...] = ()  # (module path, call number) of the running modules on a repeat call
    io: tuple[tuple[int, ...], ...] = ()  # (its first tensor input's shape, its first output's shape)
    window: int = 0  # a pooling op's window in elements (k*k; a global pool's the whole map), else 0


@dataclass
class Trace:
    """What one forward pass did: every counted op, and the names of ops that were not counted."""

    records: list[OpRecord]
    uncounted: dict[str, int]
    module_types: dict[str, str]
    module_params: dict[str, int]  # own parameters of each module (not its children's), each parameter once
    params: int
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how it was traced, when not plainly (wrappers, real runs)
    weights: Size = field(default_factory=Size)  # parameters (a quantized layer's packed weights at their width)
    buffers: Size = field(default_factory=Size)
    inputs: Size = field(default_factory=Size)
    peak: dict[int, int] = field(default_factory=dict)  # floating itemsize -> peak live activation bytes
    quantized_params: int = 0  # weights + biases held packed by quantized modules (in `params` too)
    buffer_count: int = 0  # buffer elements (BatchNorm running statistics, ...)
    param_roles: list[tuple[str, str, int]] = field(default_factory=list)  # (module, weight|bias|other, numel)
    module_kinds: dict[str, str] = field(default_factory=dict)  # what each module is (opkinds), where known
    #: module path -> (input shape, output shape) of each of its calls, in order (the modules' hooks saw them)
    module_io: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = field(default_factory=dict)
    #: the copies a forward makes that no count includes (cat, a contiguous transpose, padding: `trace.ops.COPIES`),
    #: as records of kind `other`: what a latency prediction must add, kept out of the rows, totals and memory
    copies: list[OpRecord] = field(default_factory=list)


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
    fvcore_diff: dict[str, dict[str, int]] | None = None  # fvcore - dscalc: {"skipped": {op: macs}, "added": ...}
    weights: int = 0  # conv/linear weights among `params`
    bias: int = 0
    bytes: int = 0  # bytes its ops read and write, each tensor once per op, at the profile's dtype
    activation_bytes: int = 0  # bytes its ops write (its activations)
    bias_adds: int = 0
    layer: LayerCost | None = None  # the record of a row that is exactly one convolution
    dtype: str = ""  # set when its MACs run in a fixed type (int8)

    @property
    def intensity(self) -> float:
        return 2 * self.macs / self.bytes if self.bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "type": self.type, "kind": self.kind, "params": self.params,
                               "weights": self.weights, "bias": self.bias, "macs": self.macs, "flops": 2 * self.macs,
                               "bytes": self.bytes, "intensity": round(self.intensity, 4),
                               "activation_bytes": self.activation_bytes, "bias_adds": self.bias_adds,
                               "input_shape": list(self.input_shape), "output_shape": list(self.output_shape)}
        if self.layer is not None:
            full = self.layer.to_dict()
            for key in ("kernel", "stride", "padding", "dilation", "groups", "output_padding"):
                if key in full:
                    row[key] = full[key]
        if self.dtype:
            row["mac_dtype"] = self.dtype
        if self.geometry:
            row["geometry"] = self.geometry
        if self.separable is not None:
            row["separable"] = self.separable
        if self.fvcore is not None:
            row["fvcore"] = self.fvcore
        if self.fvcore_diff is not None and self.fvcore != self.macs:
            row["fvcore_diff"] = self.fvcore_diff
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
    memory: dict[str, int] = field(default_factory=dict)  # bytes at `dtype`: weights, activations, peak, ...
    notes: list[str] = field(default_factory=list)
    dtype: str = "float32"
    ops: list[OpRecord] = field(default_factory=list)  # every op the trace recorded, in order (for predictions)
    copies: list[OpRecord] = field(default_factory=list)  # the copies it made beside them (`Trace.copies`)
    depth: int | None = None  # rows collapse module paths to this many components (None: one row per module)

"""Records of exact cost: what the engine returns for a layer and for its separable counterpart.
Rendering lives in dscalc.report."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from dscalc.cost.dtypes import itemsize
from dscalc.cost.formulas import flops, numel


@dataclass(frozen=True)
class LayerCost:
    """Exact cost of one layer. Counts are Python ints; `intensity` is the only float."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weights: int = 0  # conv/linear weights (the MobileNets paper's "parameters")
    bias: int = 0
    norm: int = 0  # learnable normalisation affine parameters (gamma, beta)
    buffers: int = 0  # non-learnable state (BatchNorm running mean/var)
    macs: int = 0  # multiply-accumulates, bias excluded
    dtype: str = "float32"  # the dtype bytes are counted at
    weight_shape: tuple[int, ...] | None = None
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[tuple[int, int], ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def params(self) -> int:
        """Learnable parameters, as PyTorch's sum(p.numel()): weights + bias + norm affine."""
        return self.weights + self.bias + self.norm

    @property
    def flops(self) -> int:
        return flops(self.macs)

    @property
    def itemsize(self) -> int:
        return itemsize(self.dtype)

    @property
    def activation_bytes(self) -> int:
        """Bytes of the input read once and the output written once."""
        return self.itemsize * (numel(self.input_shape) + numel(self.output_shape))

    @property
    def weight_bytes(self) -> int:
        """Bytes of the learnable parameters, read once."""
        return self.itemsize * self.params

    @property
    def bytes(self) -> int:
        """Bytes moved when every tensor is read or written exactly once."""
        return self.activation_bytes + self.weight_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per byte moved."""
        return self.flops / self.bytes if self.bytes else 0.0

    def geometry(self) -> str:
        """Kernel/stride/groups in short form: 3x3/s2/g32."""
        if not self.kernel:
            return ""
        text = "x".join(map(str, self.kernel))
        if any(s != 1 for s in self.stride):
            text += "/s" + "x".join(map(str, self.stride)) if len(set(self.stride)) > 1 else f"/s{self.stride[0]}"
        if any(d != 1 for d in self.dilation):
            text += "/d" + "x".join(map(str, self.dilation)) if len(set(self.dilation)) > 1 else f"/d{self.dilation[0]}"
        if self.groups != 1:
            text += f"/g{self.groups}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The row of the JSON schema (see README)."""
        row: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "weights": self.weights,
            "bias": self.bias,
            "macs": self.macs,
            "flops": self.flops,
            "bytes": self.bytes,
            "intensity": round(self.intensity, 4),
        }
        if self.norm:
            row["norm"] = self.norm
        if self.buffers:
            row["buffers"] = self.buffers
        if self.kernel:
            row["kernel"] = list(self.kernel)
            row["stride"] = list(self.stride)
            row["padding"] = [list(p) for p in self.padding]
            row["dilation"] = list(self.dilation)
            row["groups"] = self.groups
        row.update(self.extra)
        return row


@dataclass(frozen=True)
class SeparableComparison:
    """A layer and the depthwise + pointwise pair that would replace it."""

    original: LayerCost
    depthwise: LayerCost
    pointwise: LayerCost
    closed_form: Fraction  # dm * g * (1/N + 1/prod(k)), the paper's 1/N + 1/D_K^2

    @property
    def params(self) -> int:
        return self.depthwise.params + self.pointwise.params

    @property
    def weights(self) -> int:
        return self.depthwise.weights + self.pointwise.weights

    @property
    def macs(self) -> int:
        return self.depthwise.macs + self.pointwise.macs

    @property
    def flops(self) -> int:
        return flops(self.macs)

    @property
    def bytes(self) -> int:
        """Two kernels: the depthwise output is written and read back by the pointwise part."""
        return self.depthwise.bytes + self.pointwise.bytes

    @property
    def params_ratio(self) -> Fraction:
        return Fraction(self.params, self.original.params)

    @property
    def macs_ratio(self) -> Fraction:
        return Fraction(self.macs, self.original.macs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "separable": {
                "params": self.params,
                "weights": self.weights,
                "macs": self.macs,
                "flops": self.flops,
                "bytes": self.bytes,
            },
            "ratio": {
                "params": float(self.params_ratio),
                "macs": float(self.macs_ratio),
                "closed_form": float(self.closed_form),
            },
        }

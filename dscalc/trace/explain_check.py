"""The check behind `dscalc explain`: the same example computed by torch (`F.conv2d`, `F.conv_transpose2d`), its
layouts converted from Keras', compared with the exact sums of `dscalc.cost.explain`. torch is imported here, when
the check runs; without torch the check says it did not run (the exact arithmetic stands alone).

A disagreement is a bug in dscalc (the same numbers, two computations), not the user's failure: it raises
`ExplainMismatch`, which the command line reports as an internal error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dscalc.cost.explain import Example, Stage

#: float64 sums of one-decimal numbers this small differ from the exact ones by rounding alone: far below this
TOLERANCE = 1e-9


class ExplainMismatch(Exception):
    """torch and dscalc's exact arithmetic disagree on the example (an internal error)."""


@dataclass(frozen=True)
class Check:
    """The outcome: which torch computed it (None: torch is not installed) and the largest difference."""

    torch_version: str | None
    ops: tuple[str, ...] = ()
    max_diff: float | None = None

    @property
    def ran(self) -> bool:
        return self.torch_version is not None

    def to_dict(self) -> dict[str, Any]:
        return {"by": f"torch {self.torch_version}" if self.ran else None, "ops": list(self.ops),
                "max_abs_diff": self.max_diff, "agrees": True if self.ran else None}


def _op(stage: Stage) -> str:
    return "F.conv_transpose2d" if stage.name == "transposed" else "F.conv2d"


def _run(stage: Stage, x: Any, torch: Any) -> Any:
    """torch's output of one stage, NCHW float64, from its NCHW input; the kernel converted from Keras' layout."""
    import torch.nn.functional as F

    k = torch.tensor(stage.kernel.nested(), dtype=torch.float64)
    layer = stage.layer
    (pt, pb), (pl, pr) = layer.padding
    if stage.name == "transposed":
        weight = k.permute(3, 2, 0, 1)  # (kh, kw, out, in) -> (in, out, kh, kw)
        op = tuple(layer.extra["output_padding"])
        if pt == pb and pl == pr:
            return F.conv_transpose2d(x, weight, stride=layer.stride, padding=(pt, pl), output_padding=op,
                                      dilation=layer.dilation)
        # an asymmetric crop (Keras 'same' on an even kernel): the whole scatter, then the crop the engine gives
        full = F.conv_transpose2d(x, weight, stride=layer.stride, dilation=layer.dilation)
        h, w = layer.output_shape[2:]
        full = F.pad(full, (0, max(0, pl + w - full.shape[3]), 0, max(0, pt + h - full.shape[2])))
        return full[:, :, pt: pt + h, pl: pl + w]
    if stage.name == "depthwise":
        kh, kw, cin, dm = stage.kernel.shape
        weight = k.reshape(kh, kw, cin * dm, 1).permute(2, 3, 0, 1)  # output channel c·dm + m, as Keras orders it
        groups = cin
    else:
        weight = k.permute(3, 2, 0, 1)  # (kh, kw, in/g, out) -> (out, in/g, kh, kw)
        groups = layer.groups
    if pt == pb and pl == pr:
        return F.conv2d(x, weight, stride=layer.stride, padding=(pt, pl), dilation=layer.dilation, groups=groups)
    return F.conv2d(F.pad(x, (pl, pr, pt, pb)), weight, stride=layer.stride, dilation=layer.dilation, groups=groups)


def check(ex: Example) -> Check:
    """Compute the example with torch (float64, CPU), stage after stage from the input alone, and compare every
    output of every stage with the exact values. Raises ExplainMismatch where they differ."""
    try:
        import torch
    except ImportError:
        return Check(None)
    worst = 0.0
    with torch.no_grad():
        x = torch.tensor(ex.input.nested(), dtype=torch.float64).permute(2, 0, 1).unsqueeze(0)  # HWC -> NCHW
        for stage in ex.stages:
            x = _run(stage, x, torch)
            expected = stage.output
            got = x[0].permute(1, 2, 0)  # NCHW -> HWC
            if tuple(got.shape) != expected.shape:
                raise ExplainMismatch(f"torch {_op(stage)} gives a {tuple(got.shape)} output for the {stage.name} "
                                      f"stage, dscalc {expected.shape}")
            want = torch.tensor(expected.nested(), dtype=torch.float64)
            diff = float((got - want).abs().max()) if want.numel() else 0.0
            scale = max(1.0, float(want.abs().max()) if want.numel() else 0.0)
            if not diff <= TOLERANCE * scale:
                raise ExplainMismatch(f"torch {_op(stage)} disagrees with dscalc's exact sums in the {stage.name} "
                                      f"stage: max |diff| = {diff:.3g}")
            worst = max(worst, diff)
    return Check(torch.__version__.split("+")[0], tuple(_op(s) for s in ex.stages), worst)

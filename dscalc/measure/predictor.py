"""What predicts a latency: this device's calibration (`measure.calibrate`) where one is cached for the dtype,
memory format and runtime, else the textbook roofline of its ceilings - and says which it used."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from dscalc.cost.opkinds import NORM_KINDS
from dscalc.cost.records import LayerCost, SeparableComparison
from dscalc.measure import roofline
from dscalc.measure.calibrate import load_cached
from dscalc.measure.ceilings import Ceilings, age, get_ceilings
from dscalc.measure.predict import Calibration, Kernel, Prediction, kernel_of, pair
from dscalc.measure.settings import Settings


@dataclass
class Predictor:
    """Predicts each kernel's latency: calibrated when this device was calibrated for the kernel's dtype, else
    from the roofline of the device's ceilings."""

    ceilings: Ceilings
    settings: Settings
    calibrations: dict[str, Calibration | None] = field(default_factory=dict)  # by dtype, loaded on first use

    @property
    def name(self) -> str:
        return self.ceilings.name

    def calibration(self, dtype: str) -> Calibration | None:
        if dtype not in self.calibrations:
            self.calibrations[dtype] = load_cached(replace(self.settings, dtype=dtype))
        return self.calibrations[dtype]

    def predict(self, layer: LayerCost) -> Prediction:
        cal = self.calibration(layer.dtype)
        if cal is not None:
            try:
                return cal.predict(kernel_of(layer))
            except KeyError:
                pass
        return roofline.predict(layer, self.ceilings)

    def kernel(self, k: Kernel, dtype: str) -> Prediction | None:
        """A kernel of a traced model (no roofline for the memory-bound ops: None without a calibration)."""
        cal = self.calibration(dtype)
        if cal is None:
            return None
        try:
            return cal.predict(k)
        except KeyError:
            return None

    def predict_pair(self, comparison: SeparableComparison) -> tuple[Prediction, Prediction, Prediction]:
        """The depthwise and pointwise kernels, and the pair run back to back."""
        dw, pw = self.predict(comparison.depthwise), self.predict(comparison.pointwise)
        return dw, pw, pair(dw, pw)

    def model(self, dtype: str) -> str:
        return "calibrated" if self.calibration(dtype) is not None else "roofline"

    def describe(self, dtype: str) -> str:
        """One line: what the predictions come from."""
        cal = self.calibration(dtype)
        if cal is None:
            return (f"predicted: roofline of the device's ceilings (not calibrated for {dtype}"
                    + (", channels-last" if self.settings.channels_last else "")
                    + (f", {self.settings.runtime}" if self.settings.runtime != "eager" else "")
                    + "; dscalc device --calibrate)")
        return (f"predicted: calibrated model of this device ({len(cal.models)} kernel kinds, "
                f"{age(time.time() - cal.measured_at)})")


def predictor_for(settings: Settings | None, device: str = "cpu") -> Predictor:
    """The predictor for these timing settings (or the default settings on `device`)."""
    base = settings if settings is not None else Settings(device=device)
    ceilings = get_ceilings(base.device, threads=base.threads)[0]
    return Predictor(ceilings, base)


#: a traced op's kind -> the calibrated kernel kind that models it (a conv takes its layer's kind)
_OP_KINDS = {"linear": "linear", "matmul": "linear", "attention": "linear", "recurrent": "linear",
             "pooling": "pooling", **{norm: "batchnorm" for norm in NORM_KINDS}}
_BINARY = ("add", "sub", "mul", "div", "where", "maximum", "minimum")


def op_kernel(op: str, kind: str, macs: int, elements: int, nbytes: int, layer_kind: str | None,
              layer: LayerCost | None = None) -> Kernel:
    """A traced op as a kernel the calibrated model knows: convolutions by their layer's kind, matrix products as
    `linear`, norms and pooling as themselves, a two-operand elementwise op as `add`, any other as `activation`.
    With the op's `layer` (a convolution's LayerCost), the kernel carries its shape (the learned model's features)."""
    if kind == "conv" and layer is not None and layer.kind == (layer_kind or layer.kind):
        return replace(kernel_of(layer), name=op, flops=2 * macs if macs else elements, bytes=nbytes)
    if kind == "conv" and layer_kind:
        target = layer_kind
    elif kind in _OP_KINDS:
        target = _OP_KINDS[kind]
    elif kind == "elementwise" and op.split(".")[0].rstrip("_") in _BINARY:
        target = "add"
    else:
        target = "activation"
    return Kernel(op, target, 2 * macs if macs else elements, nbytes)

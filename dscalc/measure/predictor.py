"""What predicts a latency: this device's calibration (`measure.calibrate`) where one is cached for the dtype,
memory format and runtime, else a quick estimate - the textbook roofline of its ceilings (cached, or measured in a
few seconds the first time) - and says which it used and how to get the calibrated one. A prediction never waits
for a calibration (only `dscalc device --calibrate` makes one), and predicting from cached figures on a CPU imports
no torch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

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

    @property
    def threads(self) -> int:
        """The thread count the predictions are for (--threads, else this machine's default; no torch import)."""
        from dscalc.measure.ceilings import default_threads

        return self.settings.threads or default_threads()

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
        """One line: what the predictions come from - and, for a quick estimate, how to get the calibrated one."""
        cal = self.calibration(dtype)
        if cal is None:
            s = self.settings
            what = ", ".join(([dtype] if dtype != "float32" else []) + (["channels-last"] if s.channels_last else [])
                             + ([s.runtime] if s.runtime != "eager" else []))
            return ("predicted: quick estimate from the device's ceilings (not calibrated"
                    f"{' for ' + what if what else ''}: run `{self.calibrate_command(dtype)}` once, ~2 min)")
        return (f"predicted: calibrated model of this device ({len(cal.models)} kernel kinds, "
                f"{age(time.time() - cal.measured_at)})")

    def calibrate_command(self, dtype: str) -> str:
        """The command that calibrates this device for these predictions."""
        s = self.settings
        return " ".join(["dscalc device --calibrate"] + ([f"--device {s.device}"] if s.device != "cpu" else [])
                        + ([f"--threads {s.threads}"] if s.threads else [])
                        + ([f"--dtype {dtype}"] if dtype != "float32" else [])
                        + (["--channels-last"] if s.channels_last else [])
                        + ([f"--runtime {s.runtime}"] if s.runtime != "eager" else []))


def predictor_for(settings: Settings | None, device: str = "cpu") -> Predictor:
    """The predictor for these timing settings (or the default settings on `device`): never waits for a
    calibration, and takes the device's ceilings as they are cached (or measures the quick ones)."""
    base = settings if settings is not None else Settings(device=device)
    ceilings = get_ceilings(base.device, threads=base.threads, quick=True)[0]
    return Predictor(ceilings, base)

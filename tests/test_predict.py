"""The calibrated latency model, on fixed data (no timing in tests): the fit recovers known coefficients, stays
non-negative, names the bound, and the cache round-trips."""

from __future__ import annotations

import pytest

from dscalc.measure.predict import Calibration, Kernel, KernelModel, Sample, fit, fit_all, pair, relative_error


def synthetic(kind: str, fixed: float, per_flop: float, per_byte: float, n: int = 12) -> list[Sample]:
    """Kernels whose times follow t = fixed + flops*per_flop + bytes*per_byte exactly (the ground truth)."""
    out = []
    for i in range(n):
        flops, nbytes = 10 ** (5 + i % 5) * (1 + i), 10 ** (4 + (i * 3) % 4) * (2 + i)
        out.append(Sample(Kernel(f"k{i}", kind, flops, nbytes), fixed + flops * per_flop + nbytes * per_byte))
    return out


def test_fit_recovers_known_coefficients():
    # 90 µs fixed cost, 20 GFLOP/s, 5 GB/s: the three terms the model is made of
    model = fit("depthwise", synthetic("depthwise", 90e-6, 1 / 20e9, 1 / 5e9))
    assert model.fixed == pytest.approx(90e-6, rel=1e-6)
    assert 1 / model.per_flop == pytest.approx(20e9, rel=1e-6)
    assert 1 / model.per_byte == pytest.approx(5e9, rel=1e-6)
    assert model.error == pytest.approx(0.0, abs=1e-9) and model.samples == 12


def test_fit_never_goes_negative():
    # times that fall as work grows cannot be explained by positive rates: the fit keeps every term >= 0
    samples = [Sample(Kernel(f"k{i}", "pointwise", 10**6 * (i + 1), 10**5), 1e-3 / (i + 1)) for i in range(6)]
    model = fit("pointwise", samples)
    assert model.fixed >= 0 and model.per_flop >= 0 and model.per_byte >= 0


def test_prediction_names_its_bound_and_efficiency():
    cal = Calibration("cpu", "Test CPU", 2, "float32", False, "eager", "2.14.1", 0.0, 60.0, 1e11,
                      {"depthwise": KernelModel("depthwise", 90e-6, 1 / 20e9, 1 / 5e9),
                       "pointwise": KernelModel("pointwise", 10e-6, 1 / 50e9, 1 / 10e9)})
    # a small depthwise kernel: 2 MFLOP (100 µs of compute at 20 GFLOP/s) + 1 MB (200 µs) + 90 µs fixed
    p = cal.predict(Kernel("dw", "depthwise", 2_000_000, 1_000_000))
    assert p.seconds == pytest.approx(90e-6 + 100e-6 + 200e-6) and p.bound == "memory"
    assert p.efficiency == pytest.approx((2e6 / 390e-6) / 1e11)
    tiny = cal.predict(Kernel("dw", "depthwise", 2_000, 1_000))
    assert tiny.bound == "fixed cost"
    both = pair(p, cal.predict(Kernel("pw", "pointwise", 10**9, 10**6)))
    assert both.bound == "2 kernels" and both.seconds == pytest.approx(p.seconds + 10e-6 + 20e-3 + 100e-6)
    with pytest.raises(KeyError, match="no calibrated model for batchnorm"):
        cal.predict(Kernel("bn", "batchnorm", 1, 1))


def test_grouped_borrows_the_standard_model_when_uncalibrated():
    cal = Calibration("cpu", "x", 1, "float32", False, "eager", "t", 0, 0, None,
                      {"standard": KernelModel("standard", 1e-5, 1e-11, 0.0)})
    assert cal.predict(Kernel("g", "grouped", 10**9, 0)).seconds == pytest.approx(1e-5 + 1e-2)


def test_fit_all_skips_kinds_with_too_few_samples_and_round_trips():
    samples = synthetic("standard", 5e-5, 1 / 100e9, 1 / 20e9) + synthetic("add", 3e-6, 0.0, 1 / 8e9)[:2]
    models = fit_all(samples)
    assert set(models) == {"standard"}
    cal = Calibration("cpu", "x", 2, "float32", True, "eager", "2.14.1", 123.0, 50.0, 1e11, models, 0.2)
    again = Calibration.from_dict(cal.to_dict())
    assert again.to_dict() == cal.to_dict()
    k = Kernel("c", "standard", 10**9, 10**7)
    assert again.predict(k).seconds == pytest.approx(cal.predict(k).seconds, rel=1e-12)


def test_relative_error():
    assert relative_error(1.2, 1.0) == pytest.approx(0.2) and relative_error(0.5, 1.0) == pytest.approx(0.5)

"""The calibrated latency model, on fixed data (no timing in tests): the fit recovers known coefficients, stays
non-negative, names the bound, and the cache round-trips."""

from __future__ import annotations

import os

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


# ------------------------------------------------------------------------------------- through the commands

def test_layer_predict_uses_the_calibration(cli, fixed_ceilings):
    # 3x3 8->16 on 8x8 'same': 9*8*16*64 = 73,728 MACs; with conftest.FIXED_MODELS (standard: 20 µs + FLOPs at
    # 50 GFLOP/s) 20e-6 + 2*73,728/50e9 = 22.949 µs, compute-bound? no: the fixed cost (20 µs) is the larger term
    import json

    r = cli("layer", "--k", "3", "--cin", "8", "--cout", "16", "--size", "8", "--predict", "-f", "json")
    assert r.code == 0, r.stderr
    std = json.loads(r.stdout)["timing"]["rows"][0]
    assert std["predicted_s"] == pytest.approx(20e-6 + 2 * 73_728 / 50e9)
    assert std["bound"] == "fixed cost" and std["prediction"]["model"] == "calibrated"
    assert "median_s" not in std  # predicted, not measured


def test_profile_predicts_the_whole_forward(cli, fixed_ceilings, tmp_path):
    # Conv2d(3, 8, 3) on 1x3x8x8 -> 6x6: 3*8*9*36 = 7,776 MACs -> 20 µs + 15,552 / 50e9 s; ReLU on 288 elements,
    # read and written at 4 bytes: 5 µs + 2,304 / 10e9 s (FIXED_MODELS' activation)
    import json

    (tmp_path / "m.py").write_text("from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), "
                                   "nn.ReLU())\n")
    r = cli("profile", str(tmp_path / "m.py"), "-i", "1x3x8x8", "--predict", "-f", "json")
    assert r.code == 0, r.stderr
    timing = json.loads(r.stdout)["timing"]
    assert timing["predicted_end_to_end_s"] == pytest.approx(20e-6 + 15_552 / 50e9 + 5e-6 + 2_304 / 10e9)
    assert timing["rows"][0]["predicted_s"] == pytest.approx(20e-6 + 15_552 / 50e9)


def test_network_predict_sums_its_layers(cli, fixed_ceilings, tmp_path):
    # conv 3->8 k3 on 8x8 'same': 3*8*9*64 = 13,824 MACs; pointwise 8->8: 8*8*64 = 4,096 MACs
    import json

    (tmp_path / "t.yaml").write_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3}\n  - relu\n"
                                     "  - pointwise: {filters: 8}\n")
    r = cli("network", str(tmp_path / "t.yaml"), "--predict", "-f", "json")
    assert r.code == 0, r.stderr
    timing = json.loads(r.stdout)["timing"]
    expected = (20e-6 + 2 * 13_824 / 50e9) + (10e-6 + 2 * 4_096 / 40e9)
    assert timing["predicted_s"] == pytest.approx(expected) and timing["measured_s"] is None


def test_explain_names_the_kernel_that_costs_the_pair(cli, fixed_ceilings):
    # compare 3x3 16->16 on 7x7: standard 9*16*16*49 = 112,896 MACs -> 20 µs + 225,792 / 50e9 = 24.5 µs;
    # depthwise 50 µs + bytes / 10 GB/s, pointwise 10 µs + ...: the pair is slower, and the depthwise kernel's
    # fixed cost (50 µs) is most of it
    r = cli("compare", "--k", "3", "--cin", "16", "--cout", "16", "--size", "7")
    assert r.code == 0, r.stderr
    words = " ".join(r.stdout.split())  # the note wraps at the terminal's width
    note = words[words.index("separable is predicted"):]
    assert note.startswith("separable is predicted 2.") and "x slower here" in note
    assert "because the depthwise kernel" in note and "fixed-cost bound at this size" in note


def test_device_calibrate_measures_once_then_uses_the_cache(cli, tmp_path, monkeypatch):
    # a calibration of a small design (two kinds, three kernels each) in an empty cache
    import json

    from dscalc.cost.layers import conv, depthwise
    from dscalc.measure import calibrate

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    small = [calibrate._layer_probe(conv(c, c, 3, s, padding="same", name=f"c{c}")) for c, s in ((4, 8), (8, 8),
                                                                                                  (8, 16))]
    small += [calibrate._layer_probe(depthwise(c, 3, s, padding="same", name=f"d{c}")) for c, s in ((4, 8), (8, 8),
                                                                                                      (16, 16))]
    monkeypatch.setattr(calibrate, "design", lambda dtype="float32": small)
    chain = [calibrate._layer_probe(conv(4, 4, 3, 8, padding="same", name="c")),
             calibrate._layer_probe(depthwise(4, 3, 8, padding="same", name="d"))]
    monkeypatch.setattr(calibrate, "chains", lambda dtype="float32": {"tiny": chain})
    monkeypatch.setattr(calibrate, "candidates", lambda *a, **k: [])  # no adaptive samples (tests/test_learned.py)
    first = cli("device", "--calibrate", "--threads", "1", "--budget", "30", "-f", "json")
    assert first.code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["cached"] is False and set(data["calibration"]["models"]) == {"standard", "depthwise"}
    assert all(m["samples"] == 3 for m in data["calibration"]["models"].values())
    assert data["calibration"]["in_network"] > 0  # the tiny chain, measured / predicted
    # the budget asked for, shrunk as much as the tests' $DSCALC_MAX_RUN_TIME shortens each measurement (0.4 s)
    cap = float(os.environ.get("DSCALC_MAX_RUN_TIME") or 0.4)
    assert data["calibration"]["budget"] == pytest.approx(30 * min(cap, 0.4) / 0.4)
    assert data["calibration"]["adaptive"] == 0
    assert data["calibration"]["samples"] == 6  # the six kernels of the design (the cache keeps them, shaped)
    again = json.loads(cli("device", "--calibrate", "--threads", "1", "-f", "json").stdout)
    assert again["cached"] is True and again["calibration"] == data["calibration"]
    table = cli("device", "--calibrate", "--threads", "1").stdout
    assert "latency model" in table and "depthwise" in table and "fit error" in table


def test_reference_chains_feed_one_another():
    # each probe of a chain takes the previous one's output: the chain runs as one nn.Sequential (on meta)
    import torch
    from torch import nn

    from dscalc.measure import calibrate

    for name, probes in calibrate.chains().items():
        model = nn.Sequential(*(p.build(nn) for p in probes)).to("meta").eval()
        out = model(torch.empty(probes[0].input_shapes[0], device="meta"))
        last = probes[-1].kernel  # an activation over B x C x H x W: reads and writes 4 bytes per element
        assert out.numel() * 4 * 2 == last.bytes, name


def test_whole_model_is_the_kernels_sum_times_the_in_network_factor():
    # the model of test_profile_predicts_the_whole_forward: conv 20 µs + 15,552 FLOPs / 50e9, ReLU 5 µs +
    # 2,304 bytes / 10e9; a calibration whose kernels ran 1.5x slower inside a network
    from dataclasses import replace

    from conftest import FIXED_MODELS
    from torch import nn

    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.predictor import Predictor
    from dscalc.measure.settings import Settings
    from dscalc.study.model import whole_model
    from dscalc.trace.profile import profile_model

    models = {k: KernelModel(k, f, 1 / r if r else 0.0, 1 / b if b else 0.0) for k, (f, r, b) in FIXED_MODELS.items()}
    cal = Calibration("cpu", "x", 1, "float32", False, "eager", "t", 0, 0, 1e11, models, None, 1.5)
    result = profile_model(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), [(1, 3, 8, 8)])
    predictor = Predictor(Ceilings("cpu", "x", {"float32": 1e11}, 1e10, 1e-6), Settings(), {"float32": cal})
    alone = 20e-6 + 15_552 / 50e9 + 5e-6 + 2_304 / 10e9
    assert whole_model(result, predictor) == pytest.approx(1.5 * alone)
    predictor.calibrations["float32"] = replace(cal, in_network=1.0)
    assert whole_model(result, predictor) == pytest.approx(alone)
    assert Calibration.from_dict(cal.to_dict()).in_network == 1.5


def test_a_tf32_calibration_is_kept_apart():
    # CUDA with TF32 allowed runs other kernels: its calibration has a key of its own, and round-trips the flag
    from dataclasses import replace

    from dscalc.measure import calibrate

    fp32 = calibrate.key("cuda", "H100", 1, "float32", False, "eager", "2.14.1")
    assert calibrate.key("cuda", "H100", 1, "float32", False, "eager", "2.14.1", tf32=True) == fp32 + ":tf32"
    cal = Calibration("cuda", "H100", 1, "float32", False, "eager", "2.14.1", 0, 0, None, {}, None, 1.0, True)
    assert Calibration.from_dict(cal.to_dict()) == cal and replace(cal, tf32=False).to_dict()["tf32"] is False


@pytest.mark.parametrize("args", [["layer", "--k", "3", "--cin", "16", "--cout", "32", "--size", "14"],
                                  ["network", "cifar_depthwise"]], ids=["layer", "network"])
def test_predict_leaves_the_counts_unchanged(cli, fixed_ceilings, args):
    import json

    plain = json.loads(cli(*args, "-f", "json").stdout)
    predicted = json.loads(cli(*args, "--predict", "-f", "json").stdout)
    assert "timing" in predicted and "timing" not in plain
    assert {k: v for k, v in predicted.items() if k != "timing"} == plain


def test_the_calibration_design_covers_every_kernel_kind():
    # predict.KINDS is the one list: the engine's weighted kinds and the memory-bound ops; the design measures each
    from dscalc.cost.kinds import WEIGHTED
    from dscalc.measure import calibrate
    from dscalc.measure.predict import KINDS

    assert {p.kernel.kind for p in calibrate.design()} == set(KINDS) and set(WEIGHTED) < set(KINDS)


def test_a_predict_only_profile_says_it_measured_nothing(cli, fixed_ceilings):
    # `profile --predict` times nothing: its table must not read "measured on", "median of repeated runs" or
    # "0 threads" (it did: the predict-only context carried threads 0); it names the thread count predicted for
    result = cli("profile", "torchvision:resnet18", "--predict", "--threads", "1")
    out = result.stdout
    assert result.code == 0, result.stderr
    assert "predicted on" in out and "measured on" not in out
    assert "predicted, not measured" in out
    assert "0 threads" not in out and "median of repeated runs" not in out

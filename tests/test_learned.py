"""The learned latency model (measure.learned) and adaptive sampling, on fixed data (no timing in tests): kernels
recorded once by a real calibration (tests/data/calibration_samples.json, see its "about"), and a synthetic device
whose ground truth is a known function. Oracles: scikit-learn's own predict (for the pure-Python evaluation of the
exported trees), the known ground truth, intervals worked by hand."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from dscalc.measure import learned
from dscalc.measure.predict import (
    Calibration,
    Kernel,
    Prediction,
    Sample,
    fit_all,
    sample_from_list,
    sample_to_list,
)

pytest.importorskip("sklearn")

DATA = Path(__file__).parent / "data" / "calibration_samples.json"


def recorded() -> list[Sample]:
    return [sample_from_list(row) for row in json.loads(DATA.read_text())["samples"]]


def split(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """A fixed split: every fourth kernel held out."""
    return [s for i, s in enumerate(samples) if i % 4 != 1], [s for i, s in enumerate(samples) if i % 4 == 1]


def calibration(samples: list[Sample], guard: bool = False) -> Calibration:
    """A calibration of these samples: the linear models and (every kind's, unless `guard`) learned ones."""
    models = fit_all(samples)
    return Calibration("cpu", "x", 1, "float32", False, "eager", "t", 0.0, 1.0, 1e11, models,
                       learned=learned.fit_learned(samples, models, guard=guard), samples=tuple(samples))


def median_error(cal: Calibration, samples: list[Sample], linear: bool) -> float:
    return statistics.median(abs(cal.predict(s.kernel, linear=linear).seconds / s.seconds - 1) for s in samples)


def truth(k: Kernel) -> float:
    """The synthetic device: 20 µs fixed, then FLOPs at 40 GFLOP/s where both channel counts are multiples of 8
    (the vector width) and at 12 GFLOP/s otherwise, and bytes at 10 GB/s - an efficiency effect one line per kind
    cannot follow."""
    rate = 40e9 if k.cin % 8 == 0 and k.cout % 8 == 0 else 12e9
    return 20e-6 + k.flops / rate + k.bytes / 10e9


# ---------------------------------------------------------------------------------------------- recorded data

def test_recorded_data_is_shaped_and_round_trips():
    samples = recorded()
    assert len(samples) >= 200 and all(s.kernel.shaped for s in samples)
    assert [sample_from_list(sample_to_list(s)) for s in samples] == samples


def test_learned_model_fits_the_recorded_calibration():
    samples = recorded()
    cal = calibration(samples)
    for kind in ("depthwise", "pointwise", "standard"):  # the convolutions a comparison decides on
        forest = cal.learned[kind]
        assert forest.samples == sum(s.kernel.kind == kind for s in samples) and len(forest.trees) == learned.TREES
    # on the data it was fitted to, the learned model is closer than the linear one (in-sample)
    assert median_error(cal, samples, linear=False) < median_error(cal, samples, linear=True)


def test_exported_trees_evaluate_as_sklearn_predicts():
    # the oracle is scikit-learn itself: the mean of the pure-Python trees (through JSON) equals model.predict,
    # on the training kernels and on kernels the model never saw
    samples = recorded()
    train, test = split(samples)
    models = fit_all(train)
    for kind in ("depthwise", "pointwise", "standard", "batchnorm"):
        x, y = learned.training_set([s for s in train if s.kernel.kind == kind], models[kind])
        model = learned.ensemble(x, y)
        forest = learned.Forest.from_dict(json.loads(json.dumps(learned.export(kind, model, len(y), (0, 0), 0)
                                                                .to_dict())))
        xt, _ = learned.training_set([s for s in test if s.kernel.kind == kind], models[kind])
        expected = model.predict(x + xt)
        for row, want in zip(x + xt, expected):
            per_tree = forest.log_ratios(row)
            assert sum(per_tree) / len(per_tree) == pytest.approx(float(want), rel=1e-9, abs=1e-12)


def test_held_out_error_is_lower_than_the_linear_models():
    # as a calibration fits it: a kind's forest kept only where its out-of-bag error beats the line's fit error
    train, test = split(recorded())
    cal = calibration(train, guard=True)
    assert cal.learned and set(cal.learned) < set(cal.models)
    assert all(f.error < cal.models[kind].error for kind, f in cal.learned.items())
    assert median_error(cal, test, linear=False) < median_error(cal, test, linear=True)


def test_intervals_contain_the_point_prediction():
    train, test = split(recorded())
    cal = calibration(train)
    for s in test:
        for linear in (False, True):
            p = cal.predict(s.kernel, linear=linear)
            assert p.low is not None and p.high is not None and p.low <= p.seconds <= p.high
            assert p.model == ("calibrated" if linear or s.kernel.kind not in cal.learned else "learned")


# ------------------------------------------------------------------------------------------- the cache entry

def test_a_learned_calibration_round_trips_through_the_cache_check():
    from dscalc.measure.calibrate import checked

    cal = calibration(recorded())
    again = checked(json.loads(json.dumps(cal.to_dict())))
    for s in recorded()[:40]:
        assert again.predict(s.kernel).seconds == pytest.approx(cal.predict(s.kernel).seconds, rel=1e-12)
    assert again.samples == cal.samples


@pytest.mark.parametrize("corrupt", [
    lambda t: t["left"].__setitem__(0, 0),  # a node its own child: evaluation would never end
    lambda t: t["threshold"].__setitem__(0, float("nan")),
    lambda t: t["feature"].__setitem__(0, 99),
    lambda t: t["value"].pop(),
    lambda t: t["right"].__setitem__(t["left"].index(-1), 3),  # a leaf with one child
    lambda t: t.__setitem__("left", "0,1,2"),
], ids=["cycle", "nan", "feature", "length", "one-child", "type"])
def test_a_corrupted_learned_entry_is_rejected(corrupt):
    from dscalc.measure.calibrate import checked
    from dscalc.measure.ceilings import BadEntry

    entry = json.loads(json.dumps(calibration(recorded()).to_dict()))
    corrupt(entry["learned"]["pointwise"]["trees"][0])
    with pytest.raises(BadEntry, match="learned.pointwise"):
        checked(entry)


def test_another_feature_layout_or_bad_samples_are_rejected():
    from dscalc.measure.calibrate import checked
    from dscalc.measure.ceilings import BadEntry

    entry = json.loads(json.dumps(calibration(recorded()).to_dict()))
    entry["learned"]["depthwise"]["features"] = entry["learned"]["depthwise"]["features"][::-1]
    with pytest.raises(BadEntry, match="features"):
        checked(entry)
    entry = json.loads(json.dumps(calibration(recorded()).to_dict()))
    entry["samples"][3][-1] = -1.0
    with pytest.raises(BadEntry, match="sample"):
        checked(entry)


def test_predicting_from_a_learned_calibration_imports_neither_sklearn_nor_numpy_nor_torch(tmp_path):
    (tmp_path / "cal.json").write_text(json.dumps(calibration(recorded()).to_dict()))
    code = ("import json, sys\nfrom dscalc.measure.predict import Calibration, Kernel\n"
            f"cal = Calibration.from_dict(json.load(open({str(tmp_path / 'cal.json')!r})))\n"
            "p = cal.predict(Kernel('pw', 'pointwise', 10**8, 10**6, 1, 64, 128, 784, 784, 1, 1, 1))\n"
            "assert p.model == 'learned' and p.seconds > 0\n"
            "print(sorted(m for m in ('sklearn', 'numpy', 'torch', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ verdicts and intervals

def test_a_predicted_verdict_whose_interval_straddles_one_is_too_close_to_call():
    from dscalc.measure.latency import Latency, PairLatency
    from dscalc.measure.verdict import Verdict
    from dscalc.report.latency import verdict_line

    def lat(name, s, low, high):
        return Latency(name, 100, 100, Prediction(s, "compute", 0, s, 0, None, "learned", low, high), None)

    # original 1.0 ms (0.8-1.2), separable pair 0.9 ms (0.8-1.0): speedup 1.11x, its interval 0.8/1.0 = 0.80 to
    # 1.2/0.8 = 1.50 spans 1
    close = PairLatency(lat("standard", 1e-3, 0.8e-3, 1.2e-3), lat("dw", 0.4e-3, 0.35e-3, 0.45e-3),
                        lat("pw", 0.5e-3, 0.45e-3, 0.55e-3), lat("pair", 0.9e-3, 0.8e-3, 1.0e-3))
    assert close.predicted_interval == pytest.approx((0.8, 1.5))
    assert close.predicted_verdict is Verdict.TOO_CLOSE
    assert "(0.80-1.50x, too close to call)" in verdict_line(close)
    assert close.to_dict()["predicted_verdict"] == "too close to call"
    # original 2.0 ms (1.8-2.2) against 1.0 ms (0.9-1.1): 1.8/1.1 = 1.64 to 2.2/0.9 = 2.44, all above 1
    clear = PairLatency(lat("standard", 2e-3, 1.8e-3, 2.2e-3), lat("dw", 0.5e-3, 0.45e-3, 0.55e-3),
                        lat("pw", 0.5e-3, 0.45e-3, 0.55e-3), lat("pair", 1e-3, 0.9e-3, 1.1e-3))
    assert clear.predicted_verdict is Verdict.SEPARABLE and "too close" not in verdict_line(clear)
    assert clear.speedups()["predicted_low"] == pytest.approx(1.8 / 1.1)


def test_the_linear_models_interval_comes_from_its_fit_residuals():
    # measured / predicted of a 1-parameter fit: 10 kernels whose times are 1, 1.1, ..., 1.9 x 1 µs per MFLOP;
    # the 10th and 90th percentiles of the fit's ratios bound the interval
    samples = [Sample(Kernel(f"k{i}", "add", 10**6 * (i + 1), 0), 1e-6 * (i + 1) * (1 + i / 10)) for i in range(10)]
    model = fit_all(samples)["add"]
    ratios = sorted(s.seconds / sum(model.terms(s.kernel)) for s in samples)
    low, high = ratios[0] + 0.9 * (ratios[1] - ratios[0]), ratios[8] + 0.1 * (ratios[9] - ratios[8])
    assert model.spread == pytest.approx((low, high))
    p = Calibration("cpu", "x", 1, "float32", False, "eager", "t", 0, 0, None, {"add": model}).predict(
        Kernel("a", "add", 5 * 10**6, 0))
    assert (p.low, p.high) == pytest.approx((p.seconds * low, p.seconds * high))


# --------------------------------------------------------------------------------------- adaptive sampling

def fake_device(monkeypatch, tmp_path):
    """calibrate() on the synthetic device: every probe 'measures' its ground truth, instantly."""
    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.timer import Timing

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DSCALC_MAX_RUN_TIME", raising=False)  # the budget as given (a cap would shrink it)
    monkeypatch.setattr(calibrate, "measure_probe", lambda p, s: Timing(truth(p.kernel), 0.0, 10, 1))
    monkeypatch.setattr(calibrate, "measure_chain",
                        lambda probes, s: Timing(sum(truth(p.kernel) for p in probes), 0.0, 10, 1))
    monkeypatch.setattr(calibrate, "_with_units", lambda cal, s, p: cal)  # the fused units: tests/test_fusion.py
    monkeypatch.setattr(calibrate, "get_ceilings", lambda *a, **k: (Ceilings("cpu", "x", {"float32": 1e11}, 1e10,
                                                                              1e-6), True))
    return calibrate


def test_adaptive_sampling_adds_kernels_and_beats_the_linear_model(monkeypatch, tmp_path):
    from dscalc.measure.settings import Settings

    calibrate = fake_device(monkeypatch, tmp_path)
    ticks = []
    cal = calibrate.calibrate(Settings(threads=1), lambda: ticks.append(1), budget=10.0)
    design = {p.kernel.name for p in calibrate.design()}
    added = [s for s in cal.samples if s.kernel.name not in design]
    assert cal.adaptive == len(added) > 0 and cal.budget == 10.0
    assert len(ticks) == calibrate.probe_count("float32", 10.0) == 10  # a bar of seconds, ending at the budget
    assert {"depthwise", "pointwise"} <= set(cal.learned)
    # every forest kept beats its kind's final line (a forest learned against an earlier line, which a refit then
    # did not keep, once stayed: 'standard' here, whose forest and line are within a point of each other)
    assert all(f.error < cal.models[kind].error for kind, f in cal.learned.items())
    # kernels of the pool the calibration did not measure: the learned model follows the channel effect
    seen = {s.kernel.name for s in cal.samples}
    held = [Sample(p.kernel, truth(p.kernel)) for p in calibrate.candidates(seed=99, n=300)
            if p.kernel.name not in seen and p.kernel.kind in ("pointwise", "standard")]
    assert len(held) > 50
    assert median_error(cal, held, linear=False) < median_error(cal, held, linear=True)


def test_without_sklearn_calibration_fits_the_linear_model_and_says_so_once(monkeypatch, tmp_path, capsys):
    from dscalc.measure.settings import Settings

    calibrate = fake_device(monkeypatch, tmp_path)
    monkeypatch.setattr(learned, "available", lambda: False)
    monkeypatch.setattr(calibrate, "_SAID", set())
    for _ in range(2):
        cal = calibrate.calibrate(Settings(threads=1), budget=2.0)
        assert cal.learned == {} and cal.adaptive == 0 and set(cal.models) >= {"depthwise", "pointwise"}
    err = capsys.readouterr().err
    assert err.count("scikit-learn is not installed") == 1 and 'pip install "dscalc[learn]"' in err


def test_the_candidate_pool_is_seeded_and_distinct():
    from dscalc.measure.calibrate import candidates

    a, b = candidates(n=200), candidates(n=200)
    assert [p.kernel for p in a] == [p.kernel for p in b]
    assert len({p.kernel.name for p in a}) == 200 and all(p.kernel.shaped for p in a)
    assert math.isclose(sum(p.kernel.kind == "linear" for p in candidates(seed=5, n=400)) / 400, 1 / 16, abs_tol=0.05)


def test_kernel_of_a_layer_carries_its_shape():
    # 3x3 conv 24 -> 40 on 14x14, stride 2, padding 1, batch 4: out 7x7; the shape the learned model reads
    from dscalc.cost.layers import conv
    from dscalc.measure.predict import kernel_of

    k = kernel_of(conv(24, 40, 3, 14, stride=2, padding=1, batch=4))
    assert (k.batch, k.cin, k.cout, k.size_in, k.size_out, k.taps, k.stride, k.groups) == (4, 24, 40, 196, 49, 9, 2,
                                                                                          1)
    assert learned.features(k, 1e-3)[2:4] == [3.0, 3.0]  # 24 = 8 x 3, 40 = 8 x 5: 2^3 divides both


def test_a_prediction_is_drawn_with_its_interval():
    from dscalc.report.latency import predicted_cell

    # 1.2 ms predicted, 0.9-1.5 ms interval; a point interval (the linear model fitted exactly) draws no range
    assert predicted_cell(Prediction(1.2e-3, "compute", 0, 1.2e-3, 0, None, "learned", 0.9e-3, 1.5e-3)) == \
        "1.2 ms (900 µs-1.5 ms)"
    assert predicted_cell(Prediction(1.2e-3, "compute", 0, 1.2e-3, 0, None, "calibrated", 1.2e-3, 1.2e-3)) == "1.2 ms"
    assert predicted_cell(None) == "-"


def test_a_budget_that_is_not_a_duration_is_bad_input(cli):
    r = cli("device", "--calibrate", "--budget", "0")
    assert r.code == 2 and r.stderr.startswith("dscalc: error: --budget") and "Traceback" not in r.stderr


def test_adaptive_picks_follow_each_kinds_share_and_then_its_uncertainty():
    # the pool draws depthwise, pointwise and standard convs 3 times as often as each other kind (17 draws): a batch
    # goes to the kinds furthest behind their share of what was measured; within a kind, the candidate a forest is
    # least sure of first; a kind with no model at all (never measured) comes before every other
    from collections import Counter

    from dscalc.measure import calibrate
    from dscalc.measure.predict import KINDS, KernelModel

    pool = calibrate.candidates(seed=5, n=400)
    share = Counter(p.kernel.kind for p in pool)
    assert share["depthwise"] > 2 * share["add"]
    models = {kind: KernelModel(kind, 1e-5, 1e-11, 1e-10, 10, 0.1, (0.9, 1.1)) for kind in KINDS}
    # depthwise far ahead of its share, pointwise and standard far behind theirs, the rest on theirs: the batch
    # goes to pointwise and standard only
    have = {kind: share[kind] for kind in share} | {"depthwise": 1000, "pointwise": 0, "standard": 0}
    picked = calibrate._pick(pool, models, {}, 8, have)
    assert len(picked) == 8 and {p.kernel.kind for p in picked} <= {"pointwise", "standard"}
    # nothing measured yet: the three conv kinds first (the largest shares), then the kinds of smaller shares
    picked = [p.kernel.kind for p in calibrate._pick(pool, models, {}, 6, {})]
    assert sorted(picked[:3]) == ["depthwise", "pointwise", "standard"] and len(set(picked[3:]) - set(picked[:3])) == 3
    # a kind without a model first
    del models["add"]
    assert calibrate._pick(pool, models, {}, 8, have)[0].kernel.kind == "add"
    # within a kind: the candidate whose trees disagree most
    forest = learned.Forest("depthwise", (_stump(0.0, 0.0), _stump(0.0, 1.0)))  # trees agree at batch 1 only
    dws = [p for p in pool if p.kernel.kind == "depthwise"]
    spreads = [forest.spread(p.kernel, sum(models["depthwise"].terms(p.kernel)), 0) for p in dws]
    assert max(spreads) > min(spreads)
    first = calibrate._pick(dws, models, {"depthwise": forest}, 1, {})[0]
    assert forest.spread(first.kernel, sum(models["depthwise"].terms(first.kernel)), 0) == max(spreads)


def _stump(low: float, high: float) -> learned.Tree:
    """A tree of one split: batch 1 (log2 batch <= 0.5) -> low, a larger batch -> high."""
    return learned.Tree((1, -1, -1), (2, -1, -1), (learned.FEATURES.index("log2_batch"), 0, 0), (0.5, 0.0, 0.0),
                        (0.0, low, high))


def test_a_round_off_term_is_no_term_and_the_cache_accepts_the_fit():
    # recorded: the 'add' kernels of a real ONNX Runtime calibration, whose fit once kept a FLOP term of 2.2e25
    # FLOP/s (round-off: an add's time is its bytes) that the cache's own range check then refused, so the whole
    # calibration was read as invalid; the term is dropped (rate None), and the entry passes the cache's checks
    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import MAX_RATE
    from dscalc.measure.predict import NO_RATE, fit, sample_from_list

    assert NO_RATE == MAX_RATE
    rows = json.loads((Path(__file__).parent / "data" / "ort_add_samples.json").read_text())["samples"]
    model = fit("add", [sample_from_list(r) for r in rows])
    d = model.to_dict()
    assert d["flop_per_s"] is None and 1e9 < d["byte_per_s"] < MAX_RATE
    cal = Calibration("cpu", "x", 2, "float32", False, "onnxruntime", "t", 0, 1.0, None, {"add": model})
    assert calibrate.checked(cal.to_dict()).models["add"].per_flop == 0.0


def test_a_depth_multiplier_is_its_own_kernel_kind_and_fitting_it_apart_mends_the_depthwise_line():
    from dataclasses import replace

    from dscalc.cost.layers import depthwise
    from dscalc.measure.predict import MULTIPLIER, kernel_of

    assert kernel_of(depthwise(32, 3, 14)).kind == "depthwise"
    assert kernel_of(depthwise(32, 3, 14, depth_multiplier=2)).kind == MULTIPLIER

    # a synthetic device where a depth multiplier takes another algorithm, 50 µs + FLOPs at 100 GFLOP/s with
    # multiplier 1 and at 10 GFLOP/s with 2 (a fresh eager calibration here: the dm1 line's kernels within 25%
    # went from 66% to 80% once the dm2 ones were fitted apart)
    def device(k: Kernel) -> float:
        return 50e-6 + k.flops / (100e9 if k.cout == k.cin else 10e9)

    layers = [depthwise(c, k, s, depth_multiplier=dm, padding="same")
              for c in (16, 48, 96, 256) for k in (3, 5) for s in (14, 56) for dm in (1, 1, 1, 2)]
    measured = [Sample(kernel_of(x), device(kernel_of(x))) for x in layers]
    dm1 = [m for m in measured if m.kernel.kind == "depthwise"]
    apart = fit_all(measured)
    together = fit_all([replace(m, kernel=replace(m.kernel, kind="depthwise")) for m in measured])

    def worst(model, samples):
        return max(abs(sum(model.terms(m.kernel)) / m.seconds - 1) for m in samples)

    dm2 = [m for m in measured if m.kernel.kind == MULTIPLIER]
    assert worst(apart["depthwise"], dm1) < 1e-6 and worst(apart[MULTIPLIER], dm2) < 1e-6
    # one line for both: the multiplier's kernels predicted at a fraction of their time, the others off too
    assert worst(together["depthwise"], dm2) > 0.5 and worst(together["depthwise"], dm1) > 0.01
    # a calibration cached before the kind was measured predicts it by the depthwise line
    old = calibration(dm1)
    k = kernel_of(depthwise(32, 3, 14, depth_multiplier=2))
    assert old.predict(k, linear=True).seconds == old.predict(replace(k, kind="depthwise"), linear=True).seconds


# ------------------------------------------------------------------------- torch's choice of convolution kernel

#: (in channels, out channels, kernel (h, w), map side, batch, groups) and the thread counts; around each bound of
#: ATen's ConvParams::use_mkldnn: 416 x 7² = 20,384 input elements (native), 420 x 7² = 20,580 (oneDNN)
DISPATCH_CASES = [(416, 64, (1, 1), 7, 1, 1), (420, 64, (1, 1), 7, 1, 1), (100, 100, (3, 3), 14, 1, 1),
                  (108, 108, (3, 3), 14, 1, 1), (64, 64, (5, 5), 7, 1, 1), (64, 64, (1, 5), 7, 1, 1),
                  (64, 64, (4, 4), 7, 1, 1), (8, 8, (1, 1), 7, 2, 1), (8, 8, (3, 3), 7, 2, 1),
                  (64, 64, (3, 3), 7, 1, 2), (64, 64, (1, 1), 56, 1, 1), (64, 64, (1, 1), 56, 16, 1)]


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_native_conv_is_the_kernel_torch_itself_runs(threads):
    # the oracle: torch's profiler, naming the kernel the convolution ran (_slow_conv2d_forward or mkldnn's)
    torch = pytest.importorskip("torch")
    from dscalc.cost.layers import conv
    from dscalc.measure.predict import kernel_of

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN: every CPU convolution runs natively")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for cin, cout, (kh, kw), side, batch, groups in DISPATCH_CASES:
            module = torch.nn.Conv2d(cin, cout, (kh, kw), groups=groups, bias=False).eval()
            with torch.inference_mode(), torch.profiler.profile() as prof:
                module(torch.randn(batch, cin, side, side))
            names = {e.name for e in prof.events()}
            ran_native = "aten::_slow_conv2d_forward" in names
            assert ran_native or "aten::mkldnn_convolution" in names, names
            k = kernel_of(conv(cin, cout, (kh, kw), side, groups=groups, batch=batch))
            assert learned.torch_native_conv(k, threads) == ran_native, (cin, cout, kh, kw, side, batch, groups)
    finally:
        torch.set_num_threads(before)


def test_torch_native_conv_is_off_where_torch_does_not_choose():
    from dscalc.cost.layers import conv
    from dscalc.measure.predict import kernel_of

    k = kernel_of(conv(64, 64, 1, 7))  # native on torch's CPU, 2 threads
    assert learned.torch_native_conv(k, 2)
    assert learned.native_threads("cpu", "eager", "float32", 2) == learned.native_threads("cpu", "compile",
                                                                                          "float32", 2) == 2
    for device, runtime, dtype in [("cpu", "onnxruntime", "float32"), ("cpu", "litert", "float32"),
                                   ("cuda", "eager", "float32"), ("cpu", "eager", "bfloat16")]:
        assert learned.native_threads(device, runtime, dtype, 2) == 0
    assert not learned.torch_native_conv(k, 0)


def test_the_native_path_step_is_learned_with_its_feature():
    # a synthetic device whose convolutions on torch's native path run at 0.4x the time of truth() (a pointwise on
    # oneDNN's NCHW path pays its reorders; up to 3x apart on a real CPU, results/conv_paths.txt): one line per
    # kind cannot follow that step, a forest that sees the feature can
    from dscalc.measure import calibrate

    def stepped(k: Kernel) -> float:
        return truth(k) * (0.4 if learned.torch_native_conv(k, 2) else 1.0)

    pool = [p.kernel for p in calibrate.candidates(seed=5, n=6000) if p.kernel.kind in ("pointwise", "standard")]
    train = [Sample(k, stepped(k)) for k in pool[:800]]
    held = [Sample(k, stepped(k)) for k in pool[800:] if learned.torch_native_conv(k, 2)]
    assert len(held) > 30 and sum(learned.torch_native_conv(s.kernel, 2) for s in train) > 30
    models = fit_all(train)
    cal = {n: Calibration("cpu", "x", 2, "float32", False, "eager", "t", 0.0, 1.0, 1e11, models,
                          learned=learned.fit_learned(train, models, guard=False, native_threads=n))
           for n in (0, 2)}
    # both calibrations compute the feature alike (eager, CPU, float32, 2 threads: `Calibration.native_threads`);
    # only the forests fitted with it split on it - trees never split on a feature that was constant in training
    assert cal[0].native_threads == cal[2].native_threads == 2
    at = learned.FEATURES.index("torch_native_conv")

    def splits_on_it(c: Calibration) -> bool:
        return any(at in [f for f, left in zip(t.feature, t.left) if left != -1] for forest in c.learned.values()
                   for t in forest.trees)

    assert splits_on_it(cal[2]) and not splits_on_it(cal[0])
    with_feature, without = median_error(cal[2], held, linear=False), median_error(cal[0], held, linear=False)
    assert with_feature < 0.15 < 0.3 < without

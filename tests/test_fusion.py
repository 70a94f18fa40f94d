"""Fusion-aware whole-model prediction (`measure.fusion`): the grouping of traced torchvision models into the units a
runtime runs, counted against each model's module tree (an independent oracle: torchvision's own classes), the
factor fit on recorded (measured, predicted) pairs, the whole-model prediction by units, and the cache's checks of
the factors. No timing."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from dscalc.measure import fusion  # noqa: E402


def _traced(name: str):
    from dscalc.trace.profile import profile_model

    model = getattr(torchvision.models, name)().eval()
    return model, profile_model(model.to("meta"), [(1, 3, 224, 224)])


def _convs(model, inside=()):
    """Conv2d modules not inside any module of the classes `inside`: (depthwise, others)."""
    skip = {n for n, m in model.named_modules() if isinstance(m, inside)} if inside else set()
    dw = other = 0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and not any(name.startswith(s + ".") for s in skip):
            if m.groups == m.in_channels > 1 and m.out_channels % m.in_channels == 0:
                dw += 1
            else:
                other += 1
    return dw, other


def _covers(units, n):
    members = sorted(i for u in units for i in u.ops)
    assert members == list(range(n))  # every traced op in exactly one unit


def test_mobilenet_v3_small_units_match_its_module_tree():
    from torchvision.models.mobilenetv3 import InvertedResidual
    from torchvision.ops import SqueezeExcitation

    model, result = _traced("mobilenet_v3_small")
    found = fusion.units(result.ops, "eager")
    _covers(found, len(result.ops))
    n = fusion.counts(found)
    assert n["se"] == sum(isinstance(m, SqueezeExcitation) for m in model.modules())  # 9 in torchvision
    assert n["se"] == 9
    assert n["residual"] == sum(isinstance(m, InvertedResidual) and m.use_res_connect for m in model.modules())
    dw, other = _convs(model, SqueezeExcitation)  # the SE's 1x1 convs belong to the SE units
    assert (n["depthwise"], n["conv"]) == (dw, other)
    assert n["shuffle"] == 0
    # eager runs every kernel of every unit
    assert all(u.runs == u.ops for u in found)


def test_shufflenet_units_match_its_module_tree():
    from torchvision.models.shufflenetv2 import InvertedResidual

    model, result = _traced("shufflenet_v2_x0_5")
    found = fusion.units(result.ops, "eager")
    _covers(found, len(result.ops))
    n = fusion.counts(found)
    assert n["shuffle"] == sum(isinstance(m, InvertedResidual) for m in model.modules())  # 3 + 7 + 3 + 3 = 16
    assert (n["depthwise"], n["conv"]) == _convs(model)
    assert n["se"] == n["residual"] == 0
    # a shuffle unit's two copies (the cat and the contiguous transpose) of its block's output: stage2.0 outputs
    # 48 channels (24 + 24) of 28x28, 4 bytes each, read and written
    first = next(u for u in found if u.pattern == "shuffle")
    assert first.module == "stage2.0" and first.ops == ()
    assert [k.bytes for k in first.extra] == [2 * 48 * 28 * 28 * 4] * 2


def test_resnet18_units_and_what_each_runtime_runs():
    from torchvision.models.resnet import BasicBlock

    from dscalc.trace.profile import profile_model

    model, result = _traced("resnet18")
    ops = result.ops
    eager = fusion.units(ops, "eager")
    _covers(eager, len(ops))
    n = fusion.counts(eager)
    assert n["residual"] == sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    assert n["conv"] == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 20
    # every conv unit is conv + bn (+ relu): ONNX Runtime folds the bn and fuses the relu, running the conv only
    ort = fusion.units(ops, "onnxruntime")
    assert [u.ops for u in ort] == [u.ops for u in eager]  # the grouping is the runtime's; only `runs` differs
    for u in ort:
        if u.pattern == "conv":
            assert [ops[i].kind for i in u.runs] == ["conv"]
            assert ops[u.ops[1]].kind == "batchnorm"
    # in training mode each batch norm also bumps its step counter (a 1-element add) before it runs: the units
    # are the same (its running statistics' updates are other ops)
    trained = fusion.counts(fusion.units(profile_model(model.train(), [(1, 3, 224, 224)]).ops, "eager"))
    assert {p: trained[p] for p in fusion.LEARNED} == {p: n[p] for p in fusion.LEARNED}
    # inductor fuses bn + relu into one pointwise kernel after the conv
    for u in fusion.units(ops, "compile"):
        if u.pattern == "conv" and len(u.ops) == 3:
            assert [ops[i].kind for i in u.runs] == ["conv", "batchnorm"]


def test_onnxruntime_keeps_the_activations_it_cannot_fuse():
    # mobilenet_v3's hardswish is a node of its own in ONNX Runtime (Conv Activation Fusion takes Relu, Clip,
    # Sigmoid, Tanh, LeakyRelu, HardSigmoid): its conv units run conv + hardswish, its relu units the conv only
    _, result = _traced("mobilenet_v3_small")
    ops = result.ops
    for u in fusion.units(ops, "onnxruntime"):
        if u.pattern in ("conv", "depthwise"):
            acts = [fusion.base(ops[i].op) for i in u.ops if ops[i].kind == "elementwise"]
            ran = [fusion.base(ops[i].op) for i in u.runs if ops[i].kind == "elementwise"]
            assert ran == [a for a in acts if a == "hardswish"]
            assert not any(ops[i].kind == "batchnorm" for i in u.runs)


def test_fit_factors_is_the_geometric_mean_per_pattern():
    pairs = [("conv", 2.0, 1.0), ("conv", 8.0, 1.0),  # sqrt(2 * 8) = 4
             ("se", 3e-5, 1e-5),  # 3
             ("residual", 0.0, 1.0), ("residual", 1.0, -1.0), ("shuffle", math.nan, 1.0)]  # no evidence
    assert fusion.fit_factors(pairs) == pytest.approx({"conv": 4.0, "se": 3.0})


def _calibration(units, in_network=1.5):
    from conftest import FIXED_MODELS

    from dscalc.measure.predict import Calibration, KernelModel

    models = {k: KernelModel(k, f, 1 / r if r else 0.0, 1 / b if b else 0.0) for k, (f, r, b) in FIXED_MODELS.items()}
    return Calibration("cpu", "x", 1, "float32", False, "eager", "t", 0, 0, 1e11, models, None, in_network,
                       units=units)


def test_whole_model_by_units_and_the_one_factor_sum():
    # Conv2d(3, 8, 3) + ReLU on 1x3x8x8 (conftest.FIXED_MODELS): conv 20 µs + 15,552 FLOPs / 50e9, ReLU 5 µs +
    # 2,304 bytes / 10e9; one conv unit whose factor is 2, an in-network factor of 1.5
    from torch import nn

    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.predictor import Predictor
    from dscalc.measure.settings import Settings
    from dscalc.study.model import summed_model, whole_model, whole_prediction
    from dscalc.trace.profile import profile_model

    conv, relu = 20e-6 + 15_552 / 50e9, 5e-6 + 2_304 / 10e9
    result = profile_model(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), [(1, 3, 8, 8)])
    ceilings = Ceilings("cpu", "x", {"float32": 1e11}, 1e10, 1e-6)
    eager = Predictor(ceilings, Settings(), {"float32": _calibration({"conv": 2.0})})
    assert whole_model(result, eager) == pytest.approx(2.0 * (conv + relu))
    assert whole_prediction(result, eager).method == "fused units"
    assert summed_model(result, eager) == pytest.approx(1.5 * (conv + relu))
    # ONNX Runtime fuses the relu into the conv: the unit runs the conv only
    ort = Predictor(ceilings, Settings(runtime="onnxruntime"), {"float32": _calibration({"conv": 2.0})})
    assert whole_model(result, ort) == pytest.approx(2.0 * conv)
    # a pattern without a factor takes the in-network one; a calibration without unit factors, the old sum
    other = Predictor(ceilings, Settings(), {"float32": _calibration({"se": 3.0})})
    assert whole_model(result, other) == pytest.approx(1.5 * (conv + relu))
    old = Predictor(ceilings, Settings(), {"float32": _calibration({})})
    assert whole_prediction(result, old).method == "kernels' sum"


def test_unit_factors_round_trip_the_cache_and_a_bad_one_is_rejected():
    from dscalc.measure.calibrate import checked
    from dscalc.measure.ceilings import BadEntry

    cal = _calibration({"conv": 1.25, "se": 2.5, "shuffle": 0.75})
    entry = json.loads(json.dumps(cal.to_dict()))  # the cache is JSON
    assert checked(entry).units == {"conv": 1.25, "se": 2.5, "shuffle": 0.75}
    assert "units" not in _calibration({}).to_dict()  # an older entry without factors reads as none
    assert checked(json.loads(json.dumps(_calibration({}).to_dict()))).units == {}
    for bad in ({"conv": -1.0}, {"conv": float("nan")}, {"conv": 0}, {"conv": 1e9}, {"conv": "2"}, {"conv": True},
                {"bogus": 1.0}, ["conv"], "x"):
        with pytest.raises(BadEntry, match="units"):
            checked({**entry, "units": bad})


def test_each_calibration_chain_is_units_of_its_own_pattern_and_its_ops_are_the_tracers():
    # calibrate_units takes a chain's time as evidence for its pattern only when it groups into those units; its
    # ops are written from the chain's shapes (measure cannot import the tracer): the tracer's records of the same
    # module are the oracle, field by field
    from torch import nn

    from dscalc.trace.profile import profile_model

    def fields(op):
        return (op.module, op.op, op.kind, op.macs, op.elements, op.reads.elements, op.writes.elements, op.io,
                op.layer.kind if op.layer is not None else None)

    for chain in fusion.chains():
        found = fusion.chain_units(chain, "eager", "float32")
        assert [u.pattern for u in found] == [chain.pattern] * 2, chain.name
        traced = profile_model(chain.build(nn), chain.input_shapes).ops
        assert [fields(op) for op in chain.ops] == [fields(op) for op in traced], chain.name
        if chain.pattern != "shuffle":
            _covers(found, len(chain.ops))
        for op, k in zip(traced, fusion.op_kernels(traced, "float32")):
            # the kind each op is predicted by, from the op itself: a conv by its layer's kind, a norm as
            # batchnorm, a two-operand product/sum as add, any other elementwise op as an activation; its bytes
            # are what it reads and writes
            name = op.op.split(".")[1] if op.op.startswith("aten.") else op.op
            expected = (op.layer.kind if op.kind == "conv" else "batchnorm" if "norm" in op.kind
                        else "pooling" if op.kind == "pooling" else "add" if name in ("add", "mul")
                        else "activation")
            assert k.kind == expected, (chain.name, op.op)
            assert k.bytes == op.reads.bytes("float32") + op.writes.bytes("float32")
    assert {c.pattern for c in fusion.chains()} == set(fusion.LEARNED)


def test_profile_says_how_the_whole_forward_was_predicted(cli, fixed_ceilings, tmp_path):
    # conftest's fixed calibration has no unit factors: the one-factor sum (in-network factor 1.0); with a conv
    # factor of 2 in the cache, the conv + relu unit: 2 x (conv 20 µs + 15,552 / 50e9 + relu 5 µs + 2,304 / 10e9)
    from dscalc.measure import calibrate
    from dscalc.measure.ceilings import write_cache

    (tmp_path / "m.py").write_text("from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), "
                                   "nn.ReLU())\n")
    alone = 20e-6 + 15_552 / 50e9 + 5e-6 + 2_304 / 10e9

    def timing():
        r = cli("profile", str(tmp_path / "m.py"), "-i", "1x3x8x8", "--predict", "-f", "json")
        assert r.code == 0, r.stderr
        return json.loads(r.stdout)["timing"]

    before = timing()
    assert before["whole_model"] == "kernels' sum" and before["predicted_end_to_end_s"] == pytest.approx(alone)
    data = calibrate._read()
    for entry in data.values():
        if isinstance(entry, dict):  # (beside the entries, the cache's version)
            entry["units"] = {"conv": 2.0}
    write_cache(calibrate.cache_path(), data)
    after = timing()
    assert after["whole_model"] == "fused units" and after["predicted_end_to_end_s"] == pytest.approx(2 * alone)
    assert "1 conv x2.00" in after["prediction"]

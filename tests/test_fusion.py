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
                op.window, op.layer.kind if op.layer is not None else None)

    for chain in fusion.chains():
        found = fusion.chain_units(chain, "eager", "float32")
        assert [u.pattern for u in found] == [chain.pattern] * 2, chain.name
        result = profile_model(chain.build(nn), chain.input_shapes)
        traced = result.ops
        assert [fields(op) for op in chain.ops] == [fields(op) for op in traced], chain.name
        if chain.pattern != "shuffle":
            _covers(found, len(chain.ops))
            assert result.copies == [], chain.name
        else:  # the copies the chain's units are written with are the ones the tracer records: a cat and a clone
            assert [c.op for c in result.copies] == ["aten.cat.default", "aten.clone.default"] * 2, chain.name
            assert [k.bytes for u in found for k in u.extra] == \
                [c.reads.bytes("float32") + c.writes.bytes("float32") for c in result.copies], chain.name
        for op, k in zip(traced, fusion.op_kernels(traced, "float32")):
            # the kind each op is predicted by, from the op itself: a conv by its layer's kind, a norm as
            # batchnorm, a two-operand product/sum as add, an exponential (sigmoid, SiLU) as transcendental, any
            # other elementwise op as an activation; its bytes
            # are what it reads and writes
            name = op.op.split(".")[1] if op.op.startswith("aten.") else op.op
            expected = (op.layer.kind if op.kind == "conv" else "batchnorm" if "norm" in op.kind
                        else ("globalpool" if set(op.io[1][2:]) == {1} else "pooling") if op.kind == "pooling"
                        else "add" if name in ("add", "mul")
                        else "transcendental" if name.rstrip("_") in ("sigmoid", "silu") else "activation")
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


# ------------------------------------------------------------------ pooling windows and the copies a trace records

class _Pools(torch.nn.Module):
    """The pools a CNN runs, each named by what it does: a 3x3/2 max pool (ResNet's stem), a 2x2 average pool, a
    global average pool as a module and as a mean, and the copies no count includes (a cat, a contiguous
    transpose, a zero padding)."""

    def __init__(self):
        super().__init__()
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        self.avgpool = torch.nn.AvgPool2d(2)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        a = self.maxpool(x)  # 1x8x16x16 -> 1x8x8x8
        b = self.avgpool(a)  # -> 1x8x4x4
        c = torch.cat((b, b), 1)  # -> 1x16x4x4 (a copy)
        d = c.transpose(2, 3).contiguous()  # a copy
        e = torch.nn.functional.pad(d, (1, 1, 1, 1))  # -> 1x16x6x6 (a copy)
        return self.gap(e) + e.mean((2, 3), keepdim=True)


def test_a_pool_records_its_window_and_is_predicted_by_it():
    # windows from the modules' arguments: 3x3 = 9, 2x2 = 4; a global pool of a 6x6 map averages 36 inputs
    from dscalc.trace.profile import profile_model

    result = profile_model(_Pools(), [(1, 8, 16, 16)])
    pools = [op for op in result.ops if op.kind == "pooling"]
    assert [op.window for op in pools] == [9, 4, 36, 36]
    ks = [fusion.kernel_of_op(op, "float32") for op in pools]
    assert [k.kind for k in ks] == ["pooling", "pooling", "globalpool", "globalpool"]
    # a windowed pool: outputs x window compares/adds; a global pool: every input element once
    assert [k.flops for k in ks] == [8 * 8 * 8 * 9, 8 * 4 * 4 * 4, 16 * 36, 16 * 36]
    assert (ks[0].batch, ks[0].cin, ks[0].size_in, ks[0].size_out, ks[0].taps, ks[0].stride) == (1, 8, 256, 64, 9, 2)
    assert ks[0].bytes == 4 * (8 * 16 * 16 + 8 * 8 * 8) + 8 * 8 * 8 * 8  # its values and their int64 indices


def test_the_copies_a_forward_makes_are_recorded_beside_the_counts():
    from dscalc.trace.profile import profile_model

    result = profile_model(_Pools(), [(1, 8, 16, 16)])
    assert [c.op for c in result.copies] == ["aten.cat.default", "aten.clone.default", "aten.constant_pad_nd.default"]
    n_cat, n_pad = 16 * 4 * 4, 16 * 6 * 6
    assert [(c.reads.elements, c.writes.elements) for c in result.copies] == [(n_cat, n_cat), (n_cat, n_cat),
                                                                              (n_cat, n_pad)]
    # they are not counted: the activations are the counted ops' outputs (max pool values + indices, avg pool,
    # the two global pools and their sum), as before
    written = 8 * 8 * 8 + 8 * 4 * 4 + 16 + 16 + 16
    assert result.memory["activations"] == 4 * written + 8 * 8 * 8 * 8  # (+ the max pool's int64 indices)
    ks = [fusion.copy_kernel(c, "float32") for c in result.copies]
    assert [k.kind for k in ks] == ["copy"] * 3 and ks[0].bytes == 4 * 2 * n_cat


def test_shufflenet_shuffles_are_its_traced_copies_and_squeezenets_cats_are_units_of_their_own():
    _, shuffle = _traced("shufflenet_v2_x1_0")
    found = fusion.units(shuffle.ops, "eager", "float32", shuffle.copies)
    blocks = [u for u in found if u.pattern == "shuffle"]
    # 16 InvertedResidual blocks (3 + 7 + 3 + the 3 stride-2 first ones), each a cat and a contiguous transpose
    assert len(blocks) == 16 and all([k.name for k in u.extra] == ["aten.cat.default", "aten.clone.default"]
                                     for u in blocks)
    assert not [u for u in found if not u.ops and u.pattern != "shuffle"]  # every copy claimed by its block
    _, squeeze = _traced("squeezenet1_1")
    found = fusion.units(squeeze.ops, "eager", "float32", squeeze.copies)
    cats = [u for u in found if not u.ops]
    assert len(cats) == 8 and all(u.pattern == "other" and u.extra[0].kind == "copy" for u in cats)  # 8 Fire cats


def test_the_new_memory_probes_are_what_the_tracer_records_of_their_modules():
    # calibrate.memory_probe writes each kernel from its shape; the tracer's record of the same module is the oracle
    from torch import nn

    from dscalc.measure.calibrate import memory_probe
    from dscalc.trace.profile import profile_model

    for kind in ("globalpool", "copy", "pooling", "activation", "transcendental", "batchnorm"):
        probe = memory_probe(kind, 2, 24, 14, "float32")
        result = profile_model(probe.build(nn), probe.input_shapes)
        ops = result.copies if kind == "copy" else result.ops
        assert len(ops) == 1, kind
        k = fusion.copy_kernel(ops[0], "float32") if kind == "copy" else fusion.kernel_of_op(ops[0], "float32")
        assert (k.kind, k.flops) == (probe.kernel.kind, probe.kernel.flops), kind
        if kind != "pooling":  # (the trace's max pool also writes int64 indices, which the probe's eval run does not)
            assert k.bytes == probe.kernel.bytes, kind


# ------------------------------------------------------------------------------------- the network bandwidth

def test_fit_network_recovers_the_terms_of_chains_worked_by_hand():
    # at 10 GB/s and 20 µs a kernel: 1 ms alone, 10 MB, 10 kernels -> 1 + 1 + 0.2 = 2.2 ms; 5 ms, 20 MB, 50
    # kernels -> 5 + 2 + 1 = 8 ms; 0.1 ms, 0.1 MB, 40 kernels -> 0.1 + 0.01 + 0.8 = 0.91 ms
    chains = [(2.2e-3, 1e-3, 10_000_000, 10), (8e-3, 5e-3, 20_000_000, 50), (0.91e-3, 0.1e-3, 100_000, 40)]
    bandwidth, overhead = fusion.fit_network(chains)
    assert bandwidth == pytest.approx(1e10) and overhead == pytest.approx(20e-6)
    # bytes alone explain them (no kernel overhead): the one term
    bandwidth, overhead = fusion.fit_network([(2e-3, 1e-3, 10_000_000, 10), (7e-3, 5e-3, 20_000_000, 50)])
    assert bandwidth == pytest.approx(1e10) and overhead is None
    assert fusion.fit_network([(1e-3, 1e-3, 10_000_000, 5), (0.9e-3, 1e-3, 1_000, 5)]) == (None, None)
    assert fusion.fit_network([]) == (None, None)


def test_a_whole_model_is_its_running_kernels_plus_their_bytes_at_the_network_bandwidth():
    # Conv2d(3, 8, 3) + ReLU on 1x3x8x8 (conftest.FIXED_MODELS): the conv reads 192 inputs and 224 weights and
    # biases, writes 288 outputs (2,816 bytes); the ReLU reads and writes 288 (2,304 bytes); at 1 GB/s
    from dataclasses import replace

    from torch import nn

    from dscalc.measure.calibrate import checked
    from dscalc.measure.ceilings import BadEntry, Ceilings
    from dscalc.measure.predictor import Predictor
    from dscalc.measure.settings import Settings
    from dscalc.study.model import whole_model, whole_prediction
    from dscalc.trace.profile import profile_model

    conv, relu = 20e-6 + 15_552 / 50e9, 5e-6 + 2_304 / 10e9
    result = profile_model(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), [(1, 3, 8, 8)])
    ceilings = Ceilings("cpu", "x", {"float32": 1e11}, 1e10, 1e-6)
    cal = replace(_calibration({"conv": 2.0}), network_bandwidth=1e9, network_overhead=10e-6)
    eager = Predictor(ceilings, Settings(), {"float32": cal})
    assert whole_model(result, eager) == pytest.approx(conv + 2_816 / 1e9 + relu + 2_304 / 1e9 + 2 * 10e-6)
    assert whole_prediction(result, eager).method == "kernels in a network"
    # ONNX Runtime fuses the ReLU into the conv: only the conv runs, moves its bytes and pays the overhead once
    ort = Predictor(ceilings, Settings(runtime="onnxruntime"), {"float32": cal})
    assert whole_model(result, ort) == pytest.approx(conv + 2_816 / 1e9 + 10e-6)
    # the cache keeps them, checked; an older entry has none
    entry = json.loads(json.dumps(cal.to_dict()))
    assert checked(entry).network == (1e9, 10e-6) and "network_bandwidth" not in _calibration({}).to_dict()
    for field, bad in [(f, b) for f in ("network_bandwidth", "network_overhead") for b in (-1.0, 0, float("nan"),
                                                                                            1e30, "1e9")]:
        with pytest.raises(BadEntry, match=field):
            checked({**entry, field: bad})


def test_the_reference_chains_ops_are_the_tracers_and_onnxruntime_runs_their_convs_only():
    from torch import nn

    from dscalc.measure.calibrate import _chain, reference_layers
    from dscalc.trace.profile import profile_model

    def fields(op):
        return (op.op, op.kind, op.macs, op.elements, op.reads.elements, op.writes.elements, op.io,
                op.layer.kind if op.layer is not None else None)

    chains = reference_layers()
    assert len(chains) == 5
    for name, layers in chains.items():
        probes = _chain(layers[:3], "float32")
        traced = profile_model(nn.Sequential(*(p.build(nn) for p in probes)).eval(), probes[0].input_shapes).ops
        ops = fusion.conv_chain_ops(layers[:3])
        assert [fields(op) for op in ops] == [fields(op) for op in traced], name
        assert len(fusion.running_kernels(ops, "eager", "float32")) == 9
        assert [k.kind for k in fusion.running_kernels(ops, "onnxruntime", "float32")] == \
            [kernel_of_kind(x) for x in layers[:3]]


def kernel_of_kind(layer):
    from dscalc.measure.predict import kernel_of

    return kernel_of(layer).kind

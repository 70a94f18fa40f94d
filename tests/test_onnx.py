"""`dscalc profile model.onnx`: graphs built here node by node with onnx.helper and worked by hand (output shapes
checked by onnxruntime where it is installed), torchvision models exported with torch.onnx against torch's own
counts (sum(p.numel()), FlopCounterMode, torchvision's published `_ops`), the errors, and that no torch is
imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import run_in_process
from test_profile import ATTENTION  # the same model file as the torch profile test

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

dscalc = run_in_process
np = pytest.importorskip("numpy")


def _tensor(name, shape, value=0.5):
    return numpy_helper.from_array(np.full(shape, value, dtype=np.float32), name)


def _save(tmp_path, nodes, inputs, outputs, initializers=(), name="model.onnx", opset=21, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _profile(path, *shapes):
    args = [a for s in shapes for a in ("-i", s)]
    r = dscalc("profile", str(path), *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _valid(data):
    """The document follows dscalc's one JSON schema (dscalc/report/schema.json), as a torch profile does."""
    from pathlib import Path

    jsonschema = pytest.importorskip("jsonschema")
    schema = Path(__file__).parents[1] / "dscalc" / "report" / "schema.json"
    if schema.exists():
        jsonschema.validate(data, json.loads(schema.read_text()))
    assert data["schema_version"] == 1 and data["format"] == "onnx"


def _float(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


# ------------------------------------------------------------------------------------- convolutions

def _conv_chain(tmp_path):
    """x (N, 4, 7, 7), N dynamic
    a: Conv 4->8, k3, stride 2, group 2, auto_pad SAME_UPPER, bias -> (N, 8, 4, 4)   [ceil(7/2) = 4]
    b: ConvTranspose 8->6, k3, stride 2, group 2, pads 1, output_padding 1, bias
       -> 2*(4-1) + 1 + 3 - 2 = 8: (N, 6, 8, 8)
    c: ConvTranspose 6->4, k3, stride 2, output_shape 17x17 (no bias) -> (N, 4, 17, 17)
    f: Flatten -> (N, 1156); g: Gemm with transB, W (10, 1156), C (10) -> (N, 10)"""
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["ya"], name="a", kernel_shape=[3, 3], strides=[2, 2],
                         group=2, auto_pad="SAME_UPPER"),
        helper.make_node("ConvTranspose", ["ya", "wb", "bb"], ["yb"], name="b", strides=[2, 2], group=2,
                         pads=[1, 1, 1, 1], output_padding=[1, 1]),
        helper.make_node("ConvTranspose", ["yb", "wc"], ["yc"], name="c", strides=[2, 2], output_shape=[17, 17]),
        helper.make_node("Flatten", ["yc"], ["flat"], name="f"),
        helper.make_node("Gemm", ["flat", "wg", "bg"], ["out"], name="g", transB=1),
    ]
    inits = [_tensor("wa", (8, 2, 3, 3)), _tensor("ba", (8,)), _tensor("wb", (8, 3, 3, 3)), _tensor("bb", (6,)),
             _tensor("wc", (6, 4, 3, 3)), _tensor("wg", (10, 1156), 0.001), _tensor("bg", (10,))]
    outputs = [_float("ya", None), _float("yb", None), _float("yc", None), _float("out", None)]
    return _save(tmp_path, nodes, [_float("x", ["N", 4, 7, 7])], outputs, inits)


def test_conv_convtranspose_gemm_by_hand(tmp_path):
    path = _conv_chain(tmp_path)
    # at batch 2:
    # a: N * cout * (cin/g) * k^2 * out^2 = 2 * 8 * 2 * 9 * 16  =  4,608 MACs; params 8*2*9 + 8      =    152
    # b: N * cin * (cout/g) * k^2 * in^2  = 2 * 8 * 3 * 9 * 16  =  6,912 MACs; params 8*3*9 + 6      =    222
    # c: N * cin * cout * k^2 * in^2      = 2 * 6 * 4 * 9 * 64  = 27,648 MACs; params 6*4*9          =    216
    # g: N * 1156 * 10                                          = 23,120 MACs; params 11,560 + 10    = 11,570
    data = _profile(path, "2x4x7x7")
    rows = {r["name"]: r for r in data["rows"]}
    assert [rows[n]["macs"] for n in "abcg"] == [4_608, 6_912, 27_648, 23_120]
    assert [rows[n]["params"] for n in "abcg"] == [152, 222, 216, 11_570]
    assert rows["a"]["kind"] == "grouped" and rows["b"]["kind"] == rows["c"]["kind"] == "transposed"
    assert rows["g"]["kind"] == "linear" and rows["g"]["type"] == "Gemm"
    assert rows["a"]["output_shape"] == [2, 8, 4, 4] and rows["b"]["output_shape"] == [2, 6, 8, 8]
    assert rows["c"]["output_shape"] == [2, 4, 17, 17]
    assert data["totals"]["macs"] == 4_608 + 6_912 + 27_648 + 23_120 == 62_288
    assert data["totals"]["params"] == 152 + 222 + 216 + 11_570 == 12_160
    assert data["totals"]["conv_macs"] == 39_168 and data["totals"]["linear_macs"] == 23_120
    # the grouped 3x3 conv as separable: dw 2*4*9*16 = 1,152 + pw 2*4*8*16 = 1,024 MACs; 36 + 32 + 8 bias params
    assert rows["a"]["separable"] == {"params": 76, "macs": 2_176}
    assert data["totals"]["separable_macs"] == 62_288 - 4_608 + 2_176
    assert data["outputs"][-1] == [2, 10] and data["inputs"] == [[2, 4, 7, 7]]
    _valid(data)

    ort = pytest.importorskip("onnxruntime")  # an independent runtime agrees on every output shape
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = [list(o.shape) for o in session.run(None, {"x": np.zeros((2, 4, 7, 7), dtype=np.float32)})]
    assert shapes == [rows["a"]["output_shape"], rows["b"]["output_shape"], rows["c"]["output_shape"], [2, 10]]


def test_same_lower_dilations_and_explicit_pads(tmp_path):
    # p: Conv 3->5 k3 stride 2 auto_pad SAME_LOWER on 9x10: out ceil(9/2) x ceil(10/2) = 5x5 (padding: height
    #    (5-1)*2 + 3 - 9 = 2, width 1, the odd one before); MACs 5*3*9*25 = 3,375
    # q: Conv 5->6 k(2,3) dilation (1,2) pads [0,1,1,0] (top 0, left 1, bottom 1, right 0) on 5x5:
    #    height 5+0+1 - 2 + 1 = 5, width 5+1+0 - (2*2+1) + 1 = 2; MACs 6*5*6*(5*2) = 1,800
    nodes = [helper.make_node("Conv", ["x", "wp"], ["yp"], name="p", strides=[2, 2], auto_pad="SAME_LOWER"),
             helper.make_node("Conv", ["yp", "wq"], ["yq"], name="q", dilations=[1, 2], pads=[0, 1, 1, 0])]
    path = _save(tmp_path, nodes, [_float("x", [1, 3, 9, 10])], [_float("yp", None), _float("yq", None)],
                 [_tensor("wp", (5, 3, 3, 3)), _tensor("wq", (6, 5, 2, 3))])
    rows = {r["name"]: r for r in _profile(path, "1x3x9x10")["rows"]}
    assert (rows["p"]["macs"], rows["p"]["output_shape"]) == (3_375, [1, 5, 5, 5])
    assert (rows["q"]["macs"], rows["q"]["output_shape"]) == (1_800, [1, 6, 5, 2])
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.zeros((1, 3, 9, 10), dtype=np.float32)})
    assert [list(o.shape) for o in out] == [rows["p"]["output_shape"], rows["q"]["output_shape"]]


# ------------------------------------------------------------------------------- matmul, einsum, attention

def test_matmul_einsum_and_shared_weights(tmp_path):
    nodes = [
        # (2,1,5,8) x (3,8,4): batch dims broadcast to 2x3 -> 6 * 5*8*4 = 960 MACs (B is a weight: linear)
        helper.make_node("MatMul", ["a", "w"], ["m1"], name="mm_broadcast"),
        # the same weight again: 960 more MACs, its 96 params counted once
        helper.make_node("MatMul", ["a", "w"], ["m2"], name="mm_again"),
        # a vector on the left: (8,) x (3,8,4) -> 3 * 1*8*4 = 96 MACs
        helper.make_node("MatMul", ["v", "w"], ["m3"], name="mm_vector"),
        # attention scores: bhqd,bhkd->bhqk on (2,3,5,4) and (2,3,6,4) -> 2*3*5*6*4 = 720 MACs (matmul)
        helper.make_node("Einsum", ["q", "k"], ["s"], name="scores", equation="bhqd,bhkd->bhqk"),
        # an ellipsis: ...ij,jk->...ik on (2,3,5,4) and (4,7): 2*3*5*4*7 = 840 MACs
        helper.make_node("Einsum", ["q", "e"], ["s2"], name="ellipsis", equation="...ij,jk->...ik"),
        # nothing contracted (elementwise): no MACs, listed
        helper.make_node("Einsum", ["q", "q"], ["s3"], name="hadamard", equation="bhqd,bhqd->bhqd"),
    ]
    inits = [_tensor("w", (3, 8, 4)), _tensor("e", (4, 7))]
    inputs = [_float("a", [2, 1, 5, 8]), _float("v", [8]), _float("q", [2, 3, 5, 4]), _float("k", [2, 3, 6, 4])]
    outputs = [_float(n, None) for n in ("m1", "m2", "m3", "s", "s2", "s3")]
    path = _save(tmp_path, nodes, inputs, outputs, inits)
    data = _profile(path, "2x1x5x8", "8", "2x3x5x4", "2x3x6x4")
    rows = {r["name"]: r for r in data["rows"]}
    assert {n: rows[n]["macs"] for n in ("mm_broadcast", "mm_again", "mm_vector", "scores", "ellipsis")} == \
        {"mm_broadcast": 960, "mm_again": 960, "mm_vector": 96, "scores": 720, "ellipsis": 840}
    assert data["totals"]["macs"] == 960 + 960 + 96 + 720 + 840 == 3_576
    assert data["totals"]["params"] == 3 * 8 * 4 + 4 * 7 == 124  # w once, e once
    assert rows["mm_broadcast"]["params"] == 96 and rows["mm_again"]["params"] == 0
    assert data["by_op_kind"]["linear"]["macs"] == 960 + 960 + 96 + 840
    assert data["by_op_kind"]["matmul"]["macs"] == 720
    assert data["uncounted"] == {"Einsum (no contraction)": 1}


def test_attention_ops(tmp_path):
    # ONNX Attention (opset 23) on Q (1,2,5,4), K (1,2,6,4), V (1,2,6,3): per head Q K^T 5*6*4 and
    #   weights x V 5*6*3 -> 2 heads * 5*6*(4+3) = 420 MACs
    # com.microsoft MultiHeadAttention, 2 heads, Q (1,5,8), K (1,6,8), V (1,6,8): 5*6*(8+8) = 480 MACs
    # com.microsoft Attention (fused QKV projection), 2 heads, x (1,5,8), W (8, 24), bias 24: projection
    #   5*8*24 = 960 MACs (linear); attention 5*5*(8+8) = 400 (matmul); params 8*24 + 24 = 216
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["o"], name="attn"),
             helper.make_node("MultiHeadAttention", ["q3", "k3", "v3"], ["o3"], name="mha", domain="com.microsoft",
                              num_heads=2),
             helper.make_node("Attention", ["q3", "wqkv", "bqkv"], ["o4"], name="fused", domain="com.microsoft",
                              num_heads=2)]
    inputs = [_float("q", [1, 2, 5, 4]), _float("k", [1, 2, 6, 4]), _float("v", [1, 2, 6, 3]),
              _float("q3", [1, 5, 8]), _float("k3", [1, 6, 8]), _float("v3", [1, 6, 8])]
    path = _save(tmp_path, nodes, inputs, [_float("o", None), _float("o3", None), _float("o4", None)],
                 [_tensor("wqkv", (8, 24)), _tensor("bqkv", (24,))], opset=23,
                 extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    data = _profile(path, "1x2x5x4", "1x2x6x4", "1x2x6x3", "1x5x8", "1x6x8", "1x6x8")
    rows = {r["name"]: r for r in data["rows"]}
    assert (rows["attn"]["macs"], rows["mha"]["macs"], rows["fused"]["macs"]) == (420, 480, 960 + 400)
    assert data["by_op_kind"]["matmul"]["macs"] == 420 + 480 + 400 and data["by_op_kind"]["linear"]["macs"] == 960
    assert data["totals"]["macs"] == 2_260 and data["totals"]["params"] == 216


def test_quantized_convolution_and_matmul(tmp_path):
    # ConvInteger uint8 x (1,3,6,6), int8 W (4,3,3,3), pads 1: 4*3*9*36 = 3,888 MACs, 108 int8 params
    # MatMulInteger (1,144) x int8 (144,10): 1,440 MACs, 1,440 params; the int64 Reshape shape is no parameter
    nodes = [helper.make_node("ConvInteger", ["x", "w"], ["y"], name="qconv", pads=[1, 1, 1, 1]),
             helper.make_node("Cast", ["y"], ["y8"], to=TensorProto.UINT8),
             helper.make_node("Reshape", ["y8", "shape"], ["flat"], name="flat"),
             helper.make_node("MatMulInteger", ["flat", "wm"], ["out"], name="qfc")]
    inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.int8), "w"),
             numpy_helper.from_array(np.array([1, 144], dtype=np.int64), "shape"),
             numpy_helper.from_array(np.ones((144, 10), dtype=np.int8), "wm")]
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 6, 6])
    path = _save(tmp_path, nodes, [x], [helper.make_tensor_value_info("out", TensorProto.INT32, None)], inits)
    data = _profile(path, "1x3x6x6")
    rows = {r["name"]: r for r in data["rows"]}
    assert (rows["qconv"]["macs"], rows["qconv"]["params"], rows["qconv"]["kind"]) == (3_888, 108, "standard")
    assert (rows["qfc"]["macs"], rows["qfc"]["params"]) == (1_440, 1_440)
    assert data["totals"]["params"] == 108 + 1_440


def test_batchnorm_statistics_are_buffers_and_shape_constants_are_not_params(tmp_path):
    # Conv 3->4 k1 (12 weights) -> BatchNormalization (scale 4 + bias 4 params; mean 4 + var 4 buffers)
    # -> Reshape by an int64 constant (not a parameter)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
             helper.make_node("BatchNormalization", ["y", "s", "b", "m", "v"], ["z"], name="bn"),
             helper.make_node("Reshape", ["z", "shape"], ["out"], name="flat")]
    inits = [_tensor("w", (4, 3, 1, 1)), _tensor("s", (4,)), _tensor("b", (4,)), _tensor("m", (4,)),
             _tensor("v", (4,)), numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")]
    path = _save(tmp_path, nodes, [_float("x", [1, 3, 5, 5])], [_float("out", None)], inits)
    data = _profile(path, "1x3x5x5")
    assert (data["totals"]["params"], data["totals"]["buffers"]) == (12 + 8, 8)
    assert data["totals"]["macs"] == 3 * 4 * 25 and data["outputs"] == [[1, 100]]
    assert {r["name"]: r["kind"] for r in data["rows"]} == {"conv": "pointwise", "bn": "batchnorm"}


# --------------------------------------------------------------------------------------------- errors

def test_bad_onnx_input(tmp_path):
    path = _conv_chain(tmp_path)
    (tmp_path / "corrupt.onnx").write_bytes(b"\xff\xfe not a protobuf \x00\x01")
    (tmp_path / "empty.onnx").write_bytes(b"")
    cases = [
        (["profile", str(tmp_path / "corrupt.onnx"), "-i", "1x4x7x7"], 2, "is not a valid ONNX model"),
        (["profile", str(tmp_path / "empty.onnx"), "-i", "1x4x7x7"], 2, "holds no graph nodes"),
        (["profile", str(path), "-i", "1x4x7x7", "-i", "1x3"], 2,
         "--input: the model takes 1 input (x); got 2 --input shapes"),
        (["profile", str(path), "-i", "1x5x7x7"], 2, "input 'x' is Nx4x7x7"),
        (["profile", str(path), "-i", "1x4x7"], 2, "input 'x' has 4 dimensions"),
        (["profile", str(path), "-i", "1x4x7x7", "--time"], 2, "--time: applies to PyTorch models"),
        (["profile", str(path), "-i", "1x4x7x7", "--check", "fvcore"], 2, "--check: applies to PyTorch models"),
        (["profile", f"{path}:Net", "-i", "1x4x7x7"], 2, "names a class or function in a .py file"),
    ]
    for args, code, message in cases:
        r = dscalc(*args)
        assert r.returncode == code, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    # the --input shapes replace "N", but the fixed dims are checked: 'x' is Nx4x7x7
    assert "dimension 1 is fixed at 4" in dscalc("profile", str(path), "-i", "1x5x7x7").stderr


def test_missing_onnx_package_names_the_extra(tmp_path, monkeypatch):
    import importlib.util

    path = _conv_chain(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    r = dscalc("profile", str(path), "-i", "1x4x7x7")
    assert r.returncode == 1
    assert r.stderr.strip() == "dscalc: error: dscalc profile needs onnx, which is not installed: " \
                               "pip install 'dscalc[onnx]'"


def test_profile_onnx_never_imports_torch(tmp_path):
    path = _conv_chain(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from dscalc.cli import main
        try:
            main(['profile', {str(path)!r}, '-i', '1x4x7x7', '-f', 'json'])
        except SystemExit as e:
            assert not e.code, e.code
        assert 'torch' not in sys.modules, 'torch was imported'
        assert 'onnx' in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["macs"] == 31_144  # test_conv_convtranspose_gemm_by_hand at N=1


# ------------------------------------------------------------------------------- torch exports vs torch

torch = pytest.importorskip("torch")
tv = pytest.importorskip("torchvision")


def _export(model, shape, path, dynamo=False):
    """torch.onnx.export keeping BatchNorm as its own node (TrainingMode.TRAINING: no folding into the conv,
    which would change the parameters), with random weights."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")
            torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=True, optimize=False, verbose=False)
        else:
            torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False,
                              training=torch.onnx.TrainingMode.TRAINING)


def _rows(rows):
    return {r["name"]: (r["macs"], r["params"]) for r in rows}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "shufflenet_v2_x0_5", "regnet_x_400mf"])
def test_torchvision_export_matches_torch(name, tmp_path):
    from torch_oracles import torch_macs

    from dscalc.trace.profile import profile_model

    model = tv.models.get_model(name, weights=None).eval()
    meta = tv.models.get_model_weights(name).DEFAULT.meta
    _export(model, (1, 3, 224, 224), tmp_path / "m.onnx")
    data = _profile(tmp_path / "m.onnx", "1x3x224x224")
    flop_counter_macs, _ = torch_macs(model, torch.zeros(1, 3, 224, 224))
    assert data["totals"]["macs"] == flop_counter_macs and round(data["totals"]["macs"] / 1e9, 3) == meta["_ops"]
    assert data["totals"]["params"] == sum(p.numel() for p in model.parameters()) == meta["num_params"]
    bn_stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert data["totals"]["buffers"] == bn_stats
    traced = profile_model(model, [(1, 3, 224, 224)])  # and row by row, the torch profile of the same model
    assert _rows(data["rows"]) == _rows(r.to_dict() for r in traced.rows)
    assert data["totals"]["separable_macs"] == traced.totals["separable_macs"]
    assert [r["kind"] for r in data["rows"]] == [r.kind for r in traced.rows]


MIXED = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(32, 16, 3, 3))
            self.up = nn.ConvTranspose2d(32, 64, 4, stride=2, padding=1, groups=4)
            self.pw = nn.Conv2d(64, 8, 1)

        def forward(self, x):
            return self.pw(self.up(F.conv2d(x, self.w, padding=1)))
""")


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_grouped_transposed_conv_export(tmp_path, dynamo):
    # as in test_profile.test_mixed_functional_transposed_pointwise, by hand:
    # F.conv2d 16->32 k3 pad 1 on 8x8: 32*16*9*64 = 294,912; ConvTranspose2d 32->64 k4 s2 g4 on 8x8:
    # 32*(64/4)*16*64 = 524,288; Conv2d 1x1 64->8 on 16x16: 64*8*256 = 131,072. params 4,608 + 8,256 + 520
    namespace: dict = {}
    exec(MIXED, namespace)
    model = namespace["Mixed"]().eval()
    _export(model, (1, 16, 8, 8), tmp_path / "mixed.onnx", dynamo=dynamo)
    data = _profile(tmp_path / "mixed.onnx", "1x16x8x8")
    assert data["totals"]["macs"] == 294_912 + 524_288 + 131_072 == 950_272
    assert data["totals"]["params"] == 13_384 == sum(p.numel() for p in model.parameters())
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["up"]["kind"] == "transposed" and rows["up"]["macs"] == 524_288
    assert rows["(model)"]["macs"] == 294_912 and rows["(model)"]["params"] == 4_608  # the functional conv
    assert rows["up"]["output_shape"] == [1, 64, 16, 16]


def test_dynamo_export_rows_read_like_the_torch_profile(tmp_path):
    from dscalc.trace.profile import profile_model

    model = tv.models.resnet18(weights=None).eval()
    _export(model, (1, 3, 64, 64), tmp_path / "r18.onnx", dynamo=True)
    data = _profile(tmp_path / "r18.onnx", "1x3x64x64")
    traced = profile_model(model, [(1, 3, 64, 64)])
    assert _rows(data["rows"]) == _rows(r.to_dict() for r in traced.rows)
    assert {r["name"]: r["type"] for r in data["rows"]}["layer1.0.conv1"] == "Conv2d"  # the module's class




def test_attention_export(tmp_path):
    # as in test_profile.test_functional_matmul_einsum_attention, by hand: qkv Linear 20*64*192 = 245,760;
    # attention (exported as MatMuls) 2*4 heads * 10*10*16 * 2 = 25,600; einsum 20*64*32 = 40,960; matmul 40,960
    namespace: dict = {}
    exec(ATTENTION, namespace)
    model = namespace["Attention"]().eval()
    _export(model, (2, 10, 64), tmp_path / "attention.onnx")
    data = _profile(tmp_path / "attention.onnx", "2x10x64")
    assert data["totals"]["macs"] == 245_760 + 25_600 + 40_960 + 40_960 == 353_280
    assert data["totals"]["params"] == 64 * 192 + 192 + 64 * 32

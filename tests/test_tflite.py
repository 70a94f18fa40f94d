"""`dscalc profile model.tflite`: torch models converted with litert-torch (once per session, in a module-scoped
fixture) against torch's own counts - FlopCounterMode/2 for the MACs, the modules' parameter counts for the weights
and folded biases - and against the flatbuffer read directly with the `tflite` package for what the file stores
(int8 weights, int32 biases); an int8 post-training-quantized model (litert-torch's PT2E quantizer); hand-built
malformed files; that no torch is imported; the file timed as it is on LiteRT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_in_process

tflite = pytest.importorskip("tflite")
dscalc = run_in_process

SHAPE = (1, 3, 64, 64)


def _profile(path, *args):
    r = dscalc("profile", str(path), *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# ------------------------------------------------------------------------------------------ the converted models

def _randomize_bn(model):
    """BatchNorm statistics and affine terms and linear biases away from their initial values, so that every
    folded bias is distinct and none is zero (the converter stores equal constants once, and leaves out an all-zero
    bias: torchvision initializes mobilenet_v2's classifier bias to zeros)."""
    import torch

    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
        if isinstance(m, torch.nn.Linear) and m.bias is not None:
            with torch.no_grad():
                m.bias.copy_(torch.randn(m.out_features, generator=g))
    return model.eval()


def _grouped_transposed():
    import torch

    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.up = torch.nn.ConvTranspose2d(8, 8, 3, stride=2, groups=2)  # split into 2 TRANSPOSE_CONVs
            self.head = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.head(torch.relu(self.up(self.stem(x))))

    return Up().eval()


def _mixed():
    """CONV_3D, a depthwise conv with depth multiplier 2, pooling, a bilinear resize, two activation-by-activation
    products, softmax and a fully connected layer."""
    import torch

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c3 = torch.nn.Conv3d(2, 4, (2, 3, 3), padding=(0, 1, 1))
            self.dw = torch.nn.Conv2d(8, 16, 3, groups=8, padding=1)
            self.fc = torch.nn.Linear(16, 10)

        def forward(self, x):
            y = torch.relu(self.c3(x)).reshape(1, 12, 8, 8)[:, :8]
            y = torch.nn.functional.max_pool2d(self.dw(y), 2)
            y = torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear")
            t = y.flatten(2).transpose(1, 2)
            return self.fc(torch.softmax(t @ t.transpose(1, 2), -1) @ t)

    return Mixed().eval()


def _int8(model, x, litert_torch):
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = prepare_pt2e(torch.export.export(model, x).module(), quantizer)
    prepared(*x)  # calibration
    converted = convert_pt2e(prepared, fold_quantize=False)
    return litert_torch.convert(converted, x, quant_config=QuantConfig(pt2e_quantizer=quantizer))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> (torch model, its input, the .tflite path): converted once per session (slow on a small machine)."""
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    litert_torch = pytest.importorskip("litert_torch")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    out = tmp_path_factory.mktemp("tflite")
    torch.manual_seed(0)
    models = {
        "mobilenet_v2": (_randomize_bn(tv.models.mobilenet_v2()), (torch.randn(SHAPE),)),
        "resnet18": (_randomize_bn(tv.models.resnet18()), (torch.randn(SHAPE),)),
        "grouped_transposed": (_grouped_transposed(), (torch.randn(1, 3, 16, 16),)),
        "mixed": (_mixed(), (torch.randn(1, 2, 4, 8, 8),)),
    }
    files = {}
    for name, (model, x) in models.items():
        path = out / f"{name}.tflite"
        litert_torch.convert(model, x).export(str(path))
        files[name] = (model, x, path)
    model, x = models["mobilenet_v2"]
    path = out / "mobilenet_v2_int8.tflite"
    _int8(model, x, litert_torch).export(str(path))
    files["mobilenet_v2_int8"] = (model, x, path)
    return files


def _torch_macs(model, x):
    """The oracle: torch's FlopCounterMode (FLOPs = 2 x MACs for conv, linear and matmul)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*x)
    return counter.get_total_flops() // 2


def _torch_weights_and_folded_bias(model):
    """torch's count of what the converter keeps: every conv's and linear's weight, and one bias per output channel
    of each (the conv's own bias or the BatchNorm folded into it; a linear's bias)."""
    import torch

    weights = bias = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            weights += m.weight.numel()
            bias += m.weight.shape[0]
    return weights, bias


def _stored(path):
    """The independent read of the file: {buffer: (dtype code, elements, role)} of the weight (input 1) and bias
    inputs of its conv and fully connected operators, straight from the flatbuffer."""
    import math

    m = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    g = m.Subgraphs(0)
    slots = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
    found = {}
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        name = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if name not in slots:
            continue
        for slot, role in ((1, "weight"), (slots[name], "bias")):
            j = op.Inputs(slot) if slot < op.InputsLength() else -1
            if j < 0:
                continue
            t = g.Tensors(j)
            found[t.Buffer()] = (t.Type(), math.prod(t.ShapeAsNumpy()), role)
    return found


# ------------------------------------------------------------------------------------------------------ float

@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "grouped_transposed", "mixed"])
def test_tflite_macs_equal_torch(converted, name):
    model, x, path = converted[name]
    data = _profile(path)
    assert data["totals"]["macs"] == _torch_macs(model, x)
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert data["format"] == "tflite" and data["uncounted"] == {}


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_tflite_params_are_weights_and_folded_biases(converted, name):
    model, _, path = converted[name]
    data = _profile(path)
    weights, bias = _torch_weights_and_folded_bias(model)
    assert (data["totals"]["weights"], data["totals"]["bias"]) == (weights, bias)
    assert data["totals"]["params"] == weights + bias  # no BatchNorm parameters remain
    stored = _stored(path)
    assert data["totals"]["params"] == sum(n for _, n, _ in stored.values())
    assert data["memory"]["weights"] == 4 * data["totals"]["params"]  # float32 in the file
    assert any("BatchNorm" in note for note in data["notes"])


def test_tflite_rows_are_the_torch_modules(converted):
    """litert-torch's scopes become module paths: each conv row is the torch module of the same name, with its
    MACs and geometry."""
    import torch

    model, x, path = converted["mobilenet_v2"]
    rows = {r["name"]: r for r in _profile(path)["rows"]}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            row = rows[name]
            assert row["groups"] == m.groups and tuple(row["kernel"]) == m.kernel_size
            assert row["params"] == m.weight.numel() + m.out_channels
    depthwise = rows["features.1.conv.0.0"]
    assert depthwise["kind"] == "depthwise" and depthwise["type"] == "DEPTHWISE_CONV_2D"
    standard = rows["features.0.0"]  # the 3x3/s2 stem: a standard conv has a separable what-if
    assert standard["kind"] == "standard" and standard["separable"]["macs"] < standard["macs"]


def test_tflite_depth_multiplier_conv3d_and_matmuls(converted):
    _, _, path = converted["mixed"]
    data = _profile(path)
    rows = {r["name"]: r for r in data["rows"]}
    # Conv3d(2, 4, (2, 3, 3)) on 4x8x8 padded (0, 1, 1): out 3x8x8, 4 x 3*8*8 = 768 outputs, each
    # cin * kd*kh*kw = 2 * 18 = 36 MACs -> 27,648
    assert rows["c3"]["macs"] == 27_648 and rows["c3"]["type"] == "CONV_3D"
    # depthwise, multiplier 2: 16 outputs of 8x8, each 3x3 = 9 MACs -> 9,216
    assert rows["dw"]["macs"] == 9_216 and rows["dw"]["groups"] == 8 and rows["dw"]["kind"] == "depthwise"
    kinds = data["by_op_kind"]
    assert kinds["matmul"]["macs"] == 2 * 64 * 64 * 16  # t @ t^T and a @ t: 64x16 by 16x64, 64x64 by 64x16
    assert kinds["linear"]["macs"] == 64 * 16 * 10


def test_tflite_json_follows_the_schema(converted):
    jsonschema = pytest.importorskip("jsonschema")
    schema = Path(__file__).parents[1] / "dscalc" / "report" / "schema.json"
    jsonschema.validate(_profile(converted["mobilenet_v2_int8"][2]), json.loads(schema.read_text()))


# ------------------------------------------------------------------------------------------------------- int8

def test_tflite_int8_same_macs_as_int8_at_one_byte(converted):
    model, x, path = converted["mobilenet_v2_int8"]
    data = _profile(path)
    macs = _torch_macs(model, x)
    assert data["totals"]["macs"] == macs and data["totals"]["int8_macs"] == macs
    weighted = [r for r in data["rows"] if r["macs"]]
    assert weighted and all(r["mac_dtype"] == "int8" for r in weighted)
    assert all("int8 per-channel" in r["type"] for r in weighted if r["kind"] != "linear")
    stored = _stored(path)
    int8 = [n for code, n, role in stored.values() if role == "weight" and code == tflite.TensorType.INT8]
    int32 = [n for code, n, role in stored.values() if role == "bias" and code == tflite.TensorType.INT32]
    assert len(int8) == len([v for v in stored.values() if v[2] == "weight"])  # every weight is int8
    weights, _ = _torch_weights_and_folded_bias(model)
    assert data["totals"]["weights"] == sum(int8) == weights
    assert data["totals"]["bias"] == sum(int32)
    # params at their stored width: one byte per int8 weight, four per int32 bias
    assert data["memory"]["weights"] == sum(int8) + 4 * sum(int32)
    assert data["totals"]["quantized_params"] == data["totals"]["params"]


# ---------------------------------------------------------------------------------------------------- errors

def _damaged(tmp_path, good):
    body = Path(good).read_bytes()
    return {
        "garbage": os.urandom(4096),
        "empty": b"",
        "identifier": body[:4] + b"XXXX" + body[8:],
        "truncated": body[:200],
        "huge_vectors": body[:8] + b"\xff" * 4088,
        "text": b"this is not a model" * 100,
    }


@pytest.mark.parametrize("case", ["garbage", "empty", "identifier", "truncated", "huge_vectors", "text"])
def test_tflite_malformed_is_one_line_exit_2(converted, tmp_path, case):
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(_damaged(tmp_path, converted["grouped_transposed"][2])[case])
    r = dscalc("profile", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dscalc: error: ") and "Traceback" not in r.stderr


def test_tflite_input_must_be_the_stored_shape(converted):
    path = converted["grouped_transposed"][2]
    assert dscalc("profile", str(path), "-i", "1x3x16x16").returncode == 0  # the file's own shape
    r = dscalc("profile", str(path), "-i", "1x3x32x32")
    assert r.returncode == 2 and "stores its shapes" in r.stderr and "1x3x16x16" in r.stderr


def test_tflite_time_needs_litert(converted):
    r = dscalc("profile", str(converted["grouped_transposed"][2]), "--time")
    assert r.returncode == 2 and "--runtime litert" in r.stderr


def test_profile_tflite_never_imports_torch(converted):
    path = converted["mobilenet_v2_int8"][2]
    code = textwrap.dedent(f"""
        import sys
        from dscalc.cli import main
        try:
            main(['profile', {str(path)!r}, '-f', 'json'])
        except SystemExit as e:
            assert not e.code, e.code
        assert 'torch' not in sys.modules, 'torch was imported'
        assert 'tflite' in sys.modules and 'tensorflow' not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["int8_macs"] > 0


# ------------------------------------------------------------------------------------------------------ timing

def test_tflite_timed_as_it_is_on_litert(converted):
    pytest.importorskip("ai_edge_litert")
    r = dscalc("profile", str(converted["grouped_transposed"][2]), "--time", "--runtime", "litert", "--threads", "1",
               "-f", "json", env={"DSCALC_MAX_RUN_TIME": "0.05"})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    run = data["runtimes"][0]
    assert run["end_to_end"]["median_s"] > 0
    assert run["end_to_end"]["runtime_settings"]["num_threads"] == 1
    assert "as it is" in run["end_to_end"]["runtime_settings"]["converter"]


# ------------------------------------------------------------------------------------------- hand-built files

def _hand_built(x_shape, w_shape=(4, 8), out_shape=(1, 4)):
    """A one-operator file written with the flatbuffer builder: y = FULLY_CONNECTED(x, w), w stored (float32)."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def ints(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    def tables(start, offsets):
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    weights = b.CreateByteVector(bytes(4 * w_shape[0] * w_shape[1]))
    tflite.BufferStart(b)
    empty = tflite.BufferEnd(b)
    tflite.BufferStart(b)
    tflite.BufferAddData(b, weights)
    stored = tflite.BufferEnd(b)
    tensors = []
    for name, shape, buffer in (("x", x_shape, 0), ("w", w_shape, 1), ("y", out_shape, 0)):
        n, dims = b.CreateString(name), ints(tflite.TensorStartShapeVector, list(shape))
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, dims)
        tflite.TensorAddType(b, tflite.TensorType.FLOAT32)
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, n)
        tensors.append(tflite.TensorEnd(b))
    op_in, op_out = ints(tflite.OperatorStartInputsVector, [0, 1, -1]), ints(tflite.OperatorStartOutputsVector, [2])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_in)
    tflite.OperatorAddOutputs(b, op_out)
    op = tflite.OperatorEnd(b)
    tensor_vec = tables(tflite.SubGraphStartTensorsVector, tensors)
    ops_vec = tables(tflite.SubGraphStartOperatorsVector, [op])
    g_in, g_out = ints(tflite.SubGraphStartInputsVector, [0]), ints(tflite.SubGraphStartOutputsVector, [2])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddInputs(b, g_in)
    tflite.SubGraphAddOutputs(b, g_out)
    tflite.SubGraphAddOperators(b, ops_vec)
    graph = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.FULLY_CONNECTED)
    code = tflite.OperatorCodeEnd(b)
    codes = tables(tflite.ModelStartOperatorCodesVector, [code])
    graphs = tables(tflite.ModelStartSubgraphsVector, [graph])
    buffers = tables(tflite.ModelStartBuffersVector, [empty, stored])
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes)
    tflite.ModelAddSubgraphs(b, graphs)
    tflite.ModelAddBuffers(b, buffers)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_tflite_hand_built_fully_connected(tmp_path):
    path = tmp_path / "fc.tflite"
    path.write_bytes(_hand_built((2, 8)))
    data = _profile(path)
    # 2 rows x 8 inputs x 4 outputs = 64 MACs; the 4x8 weight is 32 params, 128 bytes
    assert data["totals"]["macs"] == 64 and data["totals"]["params"] == 32
    assert data["memory"]["weights"] == 128 and data["by_op_kind"]["linear"]["ops"] == 1


def test_tflite_shape_overflow_is_bad_input(tmp_path):
    path = tmp_path / "huge.tflite"
    path.write_bytes(_hand_built((2**31 - 1,) * 5))  # 2**155 elements: far past any int64 count
    r = dscalc("profile", str(path))
    assert r.returncode == 2 and "2**62" in r.stderr and len(r.stderr.strip().splitlines()) == 1

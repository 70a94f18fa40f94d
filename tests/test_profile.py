"""`dscalc profile` against independent figures: torchvision's published `_ops` and `num_params`,
FlopCounterMode, fvcore per layer, a functional/transposed model worked by hand, and every bad input."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from conftest import run_in_process
from torch_oracles import torch_macs

from dscalc.trace.profile import check_fvcore, profile_model

tv = pytest.importorskip("torchvision")

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "alexnet", "vgg11",
          "squeezenet1_0", "shufflenet_v2_x1_0", "densenet121", "mnasnet1_0", "efficientnet_b0", "resnet34",
          "resnext50_32x4d", "convnext_tiny", "wide_resnet50_2", "vit_b_16", "swin_t"]


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_totals(name):
    weights = tv.models.get_model_weights(name).DEFAULT
    size = weights.transforms().crop_size[0] if hasattr(weights.transforms(), "crop_size") else 224
    with torch.device("meta"):
        model = tv.models.get_model(name, weights=None).eval()
    result = profile_model(model, [(1, 3, size, size)])
    assert result.totals["params"] == weights.meta["num_params"] == sum(p.numel() for p in model.parameters())
    assert round(result.totals["macs"] / 1e9, 3) == weights.meta["_ops"]
    flop_counter_macs, _ = torch_macs(model, torch.zeros(1, 3, size, size, device="meta"))
    assert result.totals["macs"] == flop_counter_macs


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "shufflenet_v2_x1_0", "regnet_x_400mf"])
def test_every_conv_and_linear_matches_fvcore(name):
    model = tv.models.get_model(name, weights=None).eval()
    result = profile_model(model, [(1, 3, 224, 224)])
    check_fvcore(result, lambda: model)
    checked = [r for r in result.rows if r.kind in ("standard", "grouped", "depthwise", "pointwise", "linear")]
    assert len(checked) > 10
    for row in checked:
        assert row.fvcore == row.macs, row.name


MIXED = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Mixed(nn.Module):
        def __init__(self, width=32):
            super().__init__()
            self.w = nn.Parameter(torch.randn(width, 16, 3, 3))
            self.up = nn.ConvTranspose2d(width, 64, 4, stride=2, padding=1, groups=4)
            self.pw = nn.Conv2d(64, 8, 1)

        def forward(self, x):
            return self.pw(self.up(F.conv2d(x, self.w, padding=1)))
""")


@pytest.fixture
def mixed_file(tmp_path):
    path = tmp_path / "mixed.py"
    path.write_text(MIXED)
    return path


dscalc = run_in_process  # conftest: `dscalc ARGS` through dscalc.cli.main


def test_mixed_functional_transposed_pointwise(mixed_file):
    # F.conv2d 16->32 k3 pad 1 on 8x8:        32*16*9*64          = 294,912
    # ConvTranspose2d 32->64 k4 s2 g4 on 8x8: 32*(64/4)*16*(8*8)  = 524,288 (scattered from the input)
    # Conv2d 1x1 64->8 on 16x16:              64*8*256            = 131,072      total 950,272 MACs
    # params: 4,608 + (32*16*16 + 64) + (512 + 8) = 13,384
    r = dscalc("profile", str(mixed_file), "--input", "1x16x8x8", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["macs"] == 294_912 + 524_288 + 131_072 == 950_272
    assert data["totals"]["params"] == 13_384
    by_name = {row["name"]: row for row in data["rows"]}
    assert by_name["up"]["kind"] == "transposed" and by_name["up"]["macs"] == 524_288
    assert by_name["(model)"]["macs"] == 294_912  # the functional conv is attributed to the model itself
    assert by_name["(model)"]["params"] == 4_608  # and so is the parameter it uses
    assert sum(row["params"] for row in data["rows"]) == 13_384


def test_kwargs_and_formats_agree(mixed_file, tmp_path):
    # width 48: F.conv2d 48*16*9*64 = 442,368; transposed 48*16*16*64 = 786,432; pw 131,072
    r = dscalc("profile", f"{mixed_file}:Mixed", "--input", "1x16x8x8", "--kwargs", '{"width": 48}', "-f", "json")
    assert json.loads(r.stdout)["totals"]["macs"] == 442_368 + 786_432 + 131_072


def test_torchscript_and_export_match_python_source(mixed_file, tmp_path):
    sys.path.insert(0, str(mixed_file.parent))
    try:
        import mixed  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    model = mixed.Mixed()
    torch.jit.save(torch.jit.script(model), tmp_path / "m.pt")
    torch.export.save(torch.export.export(model, (torch.zeros(1, 16, 8, 8),)), tmp_path / "m.pt2")
    totals = [json.loads(dscalc("profile", str(p), "--input", "1x16x8x8", "-f", "json").stdout)["totals"]
              for p in (mixed_file, tmp_path / "m.pt", tmp_path / "m.pt2")]
    assert totals[0] == totals[1] == totals[2]


def test_profiling_does_not_change_the_model():
    model = tv.models.mobilenet_v2(weights=None)  # training mode: BN would update running stats if it ran
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks_before = dict(torch.nn.modules.module._global_forward_hooks)
    profile_model(model, [(2, 3, 224, 224)])
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and dict(torch.nn.modules.module._global_forward_hooks) == hooks_before
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_check_fvcore_cli():
    r = dscalc("profile", "torchvision:resnet18", "--input", "1x3x224x224", "--check", "fvcore", "-f", "json")
    data = json.loads(r.stdout)
    assert data["fvcore"]["by_operator"]["conv"] == data["totals"]["conv_macs"]
    assert data["fvcore"]["by_operator"]["linear"] == data["totals"]["linear_macs"]


def test_large_model_on_meta(tmp_path):
    # 4 x Conv2d(4096, 4096, 3): 4 * 4096*4096*9 = 603,979,776 params (2.4 GB in fp32) never allocated;
    # MACs at 16x16 'same': 4 * 603,979,776/4 * 256 = 154,618,822,656
    path = tmp_path / "big.py"
    path.write_text("from torch import nn\ndef big():\n    return nn.Sequential(*[nn.Conv2d(4096, 4096, 3, padding=1, "
                    "bias=False) for _ in range(4)])\n")
    r = dscalc("profile", str(path), "--input", "1x4096x16x16", "--check", "fvcore", "-f", "json")
    data = json.loads(r.stdout)
    assert data["totals"]["params"] == 603_979_776
    assert data["totals"]["macs"] == 150_994_944 * 4 * 256
    assert "too large" in data["fvcore"]["skipped"]


BAD = [
    (["profile", "missing.py", "--input", "1x3x8x8"], 2, "MODEL: no such file: missing.py"),
    (["profile", "{mixed}:Nope", "--input", "1x16x8x8"], 2, "defines no 'Nope'"),
    (["profile", "{mixed}", "--input", "1xfoo"], 2, "--input: expected a shape like 1x3x224x224, got '1xfoo'"),
    # shapes the real kernel refuses: its words, exit 2 (issue 24)
    (["profile", "{mixed}", "--input", "1x3x8x8"], 2, "the model's forward fails in Mixed.forward: RuntimeError: "
     "Given groups=1, weight of size [32, 16, 3, 3], expected input[1, 3, 8, 8] to have 16 channels"),
    (["profile", "{seq}", "--input", "1x3x8x8"], 2, "the model's forward fails in module '2' (Linear): RuntimeError: "
     "mat1 and mat2 shapes cannot be multiplied (1x288 and 100x10)"),
    (["profile", "torchvision:nonet", "--input", "1x3x8x8"], 2, "torchvision has no model 'nonet'"),
    (["profile", "{sd}", "--input", "1x3x8x8"], 2, "holds a state_dict"),
    (["profile", "{pickle}", "--input", "1x3x8x8"], 2, "loads only with --trust-pickle"),
]


@pytest.mark.parametrize("args,code,message", BAD)
def test_bad_input(args, code, message, mixed_file, tmp_path):
    (tmp_path / "seq.py").write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), "
                                     "nn.Flatten(), nn.Linear(100, 10))\n")
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickle.pt")
    args = [a.format(mixed=mixed_file, sd=tmp_path / "sd.pt", pickle=tmp_path / "pickle.pt", seq=tmp_path / "seq.py")
            for a in args]
    r = dscalc(*args)
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


ATTENTION = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(64, 192)
            self.w = nn.Parameter(torch.randn(64, 32))

        def forward(self, x):
            qkv = self.qkv(x).reshape(2, 10, 3, 4, 16).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 10, 64)
            return torch.einsum("btc,cd->btd", y, self.w) + torch.matmul(y, self.w)
""")


def test_functional_matmul_einsum_attention(tmp_path):
    # qkv Linear on 2x10 tokens: 20*64*192 = 245,760; attention, 2 batches x 4 heads, 10 tokens, 16 dims:
    # Q K^T 8*10*10*16 = 12,800 + weights x V 12,800; einsum 20*64*32 = 40,960; matmul 40,960.
    # Total 353,280. (FlopCounterMode in torch 2.14 reports 327,680 on the CPU: it does not count the CPU
    # flash-attention kernel; dscalc counts every attention kernel it knows, and the meta path runs the math one.)
    path = tmp_path / "attention.py"
    path.write_text(ATTENTION)
    expected = 245_760 + 25_600 + 40_960 + 40_960
    data = json.loads(dscalc("profile", str(path), "--input", "2x10x64", "-f", "json").stdout)
    assert data["totals"]["macs"] == expected == 353_280
    assert data["totals"]["linear_macs"] == expected and data["by_op_kind"]["linear"]["macs"] == 245_760
    sys.path.insert(0, str(tmp_path))
    try:
        import attention  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    torch.jit.save(torch.jit.script(attention.Attention()), tmp_path / "attention.pt")  # runs the CPU kernel
    scripted = json.loads(dscalc("profile", str(tmp_path / "attention.pt"), "--input", "2x10x64", "-f", "json").stdout)
    assert scripted["totals"]["macs"] == expected


def test_depth_collapses_module_paths():
    model = tv.models.resnet18(weights=None)
    full = profile_model(model, [(1, 3, 224, 224)])
    top = profile_model(model, [(1, 3, 224, 224)], depth=1)
    assert [r.name for r in top.rows] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert sum(r.macs for r in top.rows) == full.totals["macs"] == top.totals["macs"]
    assert sum(r.params for r in top.rows) == full.totals["params"]  # every parameter lands in one group
    layer1 = [r for r in full.rows if r.name.startswith("layer1.")]
    assert next(r for r in top.rows if r.name == "layer1").macs == sum(r.macs for r in layer1)


COUNTED = """
from pathlib import Path
from torch import nn

def net():
    with open(Path(__file__).with_suffix(".builds"), "a") as f:
        f.write("built\\n")
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
"""


@pytest.mark.parametrize("args,builds", [([], 1), (["--check", "fvcore"], 2), (["--time", "--check", "fvcore"], 1)])
def test_a_model_is_built_once_per_device(tmp_path, fixed_ceilings, args, builds):
    # counting builds it on meta; the fvcore check and timing need it on the CPU - built once, shared
    path = tmp_path / "counted.py"
    path.write_text(COUNTED)
    r = dscalc("profile", str(path), "-i", "1x3x8x8", *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "counted.builds").read_text().count("built") == builds


NESTED = textwrap.dedent("""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
            self.bn = nn.BatchNorm2d(c)
            self.pw = nn.Conv2d(c, 2 * c, 1)

        def forward(self, x):
            return self.pw(torch.relu(self.bn(self.conv(x))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.blocks = nn.Sequential(Block(8), Block(16))
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.head(x.mean((2, 3)))
""")


def test_torchscript_and_export_give_the_rows_of_the_python_source(tmp_path):
    # one row per module, as the .py: the same names, MACs, params and conv geometry (stem 3->8 3x3/s2 on 16x16
    # -> 8x8: 8*3*9*64 = 13,824 MACs; blocks.0.conv depthwise 8x9x64 = 4,608; ...)
    (tmp_path / "nested.py").write_text(NESTED)
    sys.path.insert(0, str(tmp_path))
    try:
        import nested  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    model = nested.Net().eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "net.pt")
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 16, 16),)), tmp_path / "net.pt2")
    keys = ("name", "kind", "macs", "params", "kernel", "stride", "groups", "input_shape", "output_shape")
    rows = []
    for path in (tmp_path / "nested.py", tmp_path / "net.pt", tmp_path / "net.pt2"):
        r = dscalc("profile", f"{path}:Net" if path.suffix == ".py" else str(path), "--input", "1x3x16x16",
                   "-f", "json")
        assert r.returncode == 0, r.stderr
        rows.append([{k: row.get(k) for k in keys} for row in json.loads(r.stdout)["rows"]])
    assert rows[0] == rows[1] == rows[2]
    names = [row["name"] for row in rows[0]]
    assert names[:4] == ["stem", "blocks.0.conv", "blocks.0.bn", "blocks.0.pw"] and "(model)" not in names
    stem = rows[0][0]
    assert stem["macs"] == 8 * 3 * 9 * 64 == 13_824 and stem["stride"] == [2, 2]
    assert rows[0][1]["macs"] == 8 * 9 * 64 and rows[0][1]["kind"] == "depthwise"


def test_profile_rows_carry_the_layer_keys(mixed_file):
    # a conv row has the keys of a `dscalc layer` row, with the arithmetic of the README's conventions:
    # the 1x1 conv 64->8 on 16x16: weights 512, bias 8, MACs 131,072, bytes at float32 = 4 x (input 64*256 +
    # output 8*256 + params 520) = 4 x 18,952 = 75,808; intensity = 2*131,072 / 75,808
    data = json.loads(dscalc("profile", str(mixed_file), "--input", "1x16x8x8", "-f", "json").stdout)
    pw = next(r for r in data["rows"] if r["name"] == "pw")
    assert (pw["weights"], pw["bias"], pw["macs"], pw["bytes"]) == (512, 8, 131_072, 75_808)
    assert pw["intensity"] == round(2 * 131_072 / 75_808, 4)
    assert (pw["kernel"], pw["stride"], pw["padding"], pw["dilation"], pw["groups"]) == ([1, 1], [1, 1],
                                                                                          [[0, 0], [0, 0]], [1, 1], 1)
    base = {"name", "kind", "params", "weights", "bias", "macs", "flops", "bytes", "intensity", "input_shape",
            "output_shape"}
    assert all(base <= set(row) for row in data["rows"])


def test_memory_at_a_dtype():
    # Conv2d(3, 8, 3, padding=1, bias=False) on 1x3x8x8: weights 216 elements, input 192, output 512 - at float32
    # 864 + 768 + 2,048 bytes, the output is the only activation and the peak; at float16 every figure halves
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    full = profile_model(conv, [(1, 3, 8, 8)]).memory
    half = profile_model(conv, [(1, 3, 8, 8)], dtype="float16").memory
    assert full == {"weights": 864, "buffers": 0, "inputs": 768, "activations": 2_048, "peak_activations": 2_048,
                    "total": 864 + 768 + 2_048}
    assert half == {k: v // 2 for k, v in full.items()}


def test_memory_matches_torchinfo_on_resnet18():
    # torchinfo's "Params size" is the same parameter bytes (its "Input size" adds the Python objects' own size,
    # sys.getsizeof, to the tensor's 602,112 bytes)
    torchinfo = pytest.importorskip("torchinfo")
    model = tv.models.resnet18().eval()
    stats = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
    memory = profile_model(model, [(1, 3, 224, 224)]).memory
    assert memory["inputs"] == 3 * 224 * 224 * 4 <= stats.total_input
    assert memory["weights"] == stats.total_param_bytes == 4 * 11_689_512


PYTHON_OP = textwrap.dedent("""
    import torch
    from torch import nn

    class WithPython(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        @torch.jit.ignore
        def helper(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

        def forward(self, x):
            return self.helper(self.fc(x))
""")


def test_torchscript_with_a_python_callback_runs_natively_on_one_row(tmp_path):
    # prim::PythonOp cannot be interpreted: TorchScript runs a copy of the module on the CPU, all MACs on one row
    # (Linear(4, 4) on 2 rows: 2*4*4 = 32), and the notes say why
    (tmp_path / "python_op.py").write_text(PYTHON_OP)
    sys.path.insert(0, str(tmp_path))
    try:
        import python_op  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    result = profile_model(torch.jit.script(python_op.WithPython()), [(2, 4)])
    assert result.totals["macs"] == 32
    assert [(r.name, r.macs) for r in result.rows if r.macs] == [("(model)", 32)]
    assert any("prim::PythonOp" in n for n in result.notes)

"""Rows a reader can trust (issue 24): a forward the real kernels would refuse fails with their words; every row is
named by what its module is and shows its shapes (every call of a module called twice too); nn.Bilinear counted by
its closed form; --check fvcore's difference split into what fvcore skips and adds; hub models' default input;
help texts that name an extra show it whole.

Oracles: the real op run on CPU tensors (its error message), the module classes themselves, shapes seen by forward
hooks on a real CPU run, closed forms worked in comments, fvcore's own FlopCountAnalysis, timm's published input
size."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import run_in_process
from torch import nn

from dscalc.errors import BadInput
from dscalc.trace.profile import check_fvcore, profile_model

# --- 1. what the real kernel refuses, the trace refuses, with its words ------------------------------------------

class One(nn.Module):
    """One module under test, named `m`, called on the input (and `fn` for functional cases)."""

    def __init__(self, m: nn.Module | None = None, fn=None) -> None:
        super().__init__()
        self.m = m if m is not None else nn.Identity()
        self.fn = fn

    def forward(self, x):
        return self.fn(self.m(x)) if self.fn is not None else self.m(x)


r = torch.rand
MISMATCHED = {
    # the case: ConvTranspose1d(32 -> 16) fed 64 channels (the meta kernel lets it through)
    "conv_transpose1d": (lambda: One(nn.ConvTranspose1d(32, 16, 3)), (1, 64, 100)),
    "conv_transpose2d": (lambda: One(nn.ConvTranspose2d(32, 16, 3)), (1, 64, 10, 10)),
    "conv_transpose3d": (lambda: One(nn.ConvTranspose3d(32, 16, 3)), (1, 64, 5, 5, 5)),
    "conv1d": (lambda: One(nn.Conv1d(32, 16, 3)), (1, 64, 10)),
    "conv2d": (lambda: One(nn.Conv2d(32, 16, 3)), (1, 64, 10, 10)),
    "conv3d": (lambda: One(nn.Conv3d(32, 16, 3)), (1, 64, 5, 5, 5)),
    "conv1d_unbatched": (lambda: One(nn.Conv1d(32, 16, 3)), (64, 10)),
    "grouped_not_divisible": (lambda: One(fn=lambda x: F.conv2d(x, torch.ones(6, 2, 3, 3, device=x.device),
                                                                 groups=4)), (1, 8, 5, 5)),
    "transposed_groups": (lambda: One(fn=lambda x: F.conv_transpose2d(x, torch.ones(6, 3, 3, 3, device=x.device),
                                                                       groups=4)), (1, 6, 5, 5)),
    "conv_bias": (lambda: One(fn=lambda x: F.conv2d(x, torch.ones(8, 4, 3, 3, device=x.device),
                                                     torch.ones(7, device=x.device))), (1, 4, 5, 5)),
    "linear": (lambda: One(nn.Linear(32, 16)), (4, 64)),
    "linear_no_bias": (lambda: One(nn.Linear(32, 16, bias=False)), (2, 4, 64)),
    "matmul": (lambda: One(fn=lambda x: x @ torch.ones(6, 7, device=x.device)), (4, 5)),
    "bmm": (lambda: One(fn=lambda x: torch.bmm(x, torch.ones(2, 6, 7, device=x.device))), (2, 4, 5)),
    "mv": (lambda: One(fn=lambda x: torch.mv(x, torch.ones(6, device=x.device))), (4, 5)),
    "dot": (lambda: One(fn=lambda x: torch.dot(x, torch.ones(6, device=x.device))), (5,)),
    "broadcast": (lambda: One(fn=lambda x: x * torch.ones(3, 1, 6, device=x.device)), (4, 5)),
}


def _real_error(build, shape) -> str:
    """The oracle: the real op on CPU tensors, and the first line of what it raises."""
    with pytest.raises(RuntimeError) as info:
        build()(r(*shape))
    return str(info.value).splitlines()[0]


@pytest.mark.parametrize("case", sorted(MISMATCHED))
def test_a_forward_the_real_kernel_refuses_fails_with_its_words(case):
    build, shape = MISMATCHED[case]
    expected = _real_error(build, shape)
    with pytest.raises(BadInput) as info:
        profile_model(build(), [shape])
    message = str(info.value)
    assert expected in message
    assert "'m'" in message or "One.forward" in message  # the module it was in


def test_conv_transpose1d_cli_exits_2_with_the_real_words(tmp_path):
    (tmp_path / "up.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        class Up(nn.Module):
            def __init__(self):
                super().__init__()
                self.up = nn.ConvTranspose1d(32, 16, 3)
            def forward(self, x):
                return self.up(x)
    """))
    expected = _real_error(lambda: nn.ConvTranspose1d(32, 16, 3), (1, 64, 100))
    res = run_in_process("profile", f"{tmp_path / 'up.py'}:Up", "--input", "1x64x100")
    assert res.code == 2, res.stdout
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1
    assert expected in res.stderr and "'up' (ConvTranspose1d)" in res.stderr


def test_shapes_that_fit_still_count():
    # ConvTranspose1d(32 -> 16, k3) on 32 x 100: C_in x C_out x k x L_in = 32 x 16 x 3 x 100 = 153,600 MACs
    assert profile_model(One(nn.ConvTranspose1d(32, 16, 3)), [(1, 32, 100)]).totals["macs"] == 153_600


# --- 2. kinds from what the module is; shapes on every row, every call ------------------------------------------

class SelfAttention(nn.Module):
    def __init__(self, e: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(e, 3 * e)
        self.out = nn.Linear(e, e)

    def forward(self, x):
        b, s, e = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, s, e))


class Zoo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(64)
        self.proj = nn.Linear(64, 64, bias=False)
        self.attn = SelfAttention()
        self.mha = nn.MultiheadAttention(64, 4, batch_first=True)
        self.lstm = nn.LSTM(64, 32, batch_first=True)
        self.gru = nn.GRU(32, 16, batch_first=True)
        self.gn = nn.GroupNorm(4, 16)
        self.inorm = nn.InstanceNorm1d(16, affine=True)
        self.bn = nn.BatchNorm1d(16)

    def forward(self, x):
        x = self.attn(self.proj(self.norm(x)))
        x, _ = self.mha(x, x, x)
        x, _ = self.lstm(x)
        x, _ = self.gru(x)
        x = x.transpose(1, 2)
        return self.bn(self.inorm(self.gn(x)))


EXPECTED_KINDS = {
    "norm": "layernorm", "proj": "linear", "attn.qkv": "linear", "attn": "attention", "attn.out": "linear",
    "mha": "attention", "mha.out_proj": "linear", "lstm": "recurrent", "gru": "recurrent", "gn": "groupnorm",
    "inorm": "instancenorm", "bn": "batchnorm",
}


def test_rows_are_named_by_what_their_module_is():
    result = profile_model(Zoo().eval(), [(2, 10, 64)])
    kinds = {row.name: row.kind for row in result.rows}
    assert kinds == EXPECTED_KINDS
    # a functional call on a child's weights is the child's: MultiheadAttention's out_proj, 2 x 10 x 64 x 64 MACs
    rows = {row.name: row for row in result.rows}
    assert rows["mha.out_proj"].macs == 2 * 10 * 64 * 64
    # the bias-free Linear is `linear` in by_op_kind too: norm, proj, qkv, out, mha in/out projections
    # proj 2*10*64*64 + qkv 2*10*64*192 + out 2*10*64*64 + mha in 2*10*64*192 + mha out 2*10*64*64
    assert result.by_op_kind["linear"]["macs"] == 1280 * (64 + 192 + 64 + 192 + 64)
    # attention: SDPA and MHA each 2 x 4 heads x 10 x 10 x (16 + 16)
    assert result.by_op_kind["attention"]["macs"] == 2 * (2 * 4 * 10 * 10 * 32)
    # recurrent: LSTM 20 steps*batch x 4 x 32 x (64 + 32) + GRU 20 x 3 x 16 x (32 + 16)
    assert result.by_op_kind["recurrent"]["macs"] == 20 * 4 * 32 * 96 + 20 * 3 * 16 * 48


def _hook_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    """The oracle: each named module's first input and first output shape, per call, on a real CPU run."""
    seen: dict[str, list] = {}
    handles = []

    def first(tree):
        leaves = [t for t in torch.utils._pytree.tree_leaves(tree) if isinstance(t, torch.Tensor)]
        return tuple(leaves[0].shape) if leaves else ()

    for name, m in model.named_modules():
        handles.append(m.register_forward_hook(
            lambda mod, inp, out, name=name: seen.setdefault(name, []).append((first(inp), first(out)))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


class Block(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(64)
        self.attn = SelfAttention()
        self.ln_2 = nn.LayerNorm(64)
        self.fc1 = nn.Linear(64, 256)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(256, 64)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.fc2(self.act(self.fc1(self.ln_2(x))))


def test_every_row_of_a_transformer_block_has_its_shapes():
    model = Block().eval()
    expected = _hook_shapes(model, r(2, 10, 64))
    result = profile_model(model, [(2, 10, 64)])
    assert {row.name for row in result.rows} == {"ln_1", "attn", "attn.qkv", "attn.out", "ln_2", "fc1", "fc2"}
    for row in result.rows:
        assert (row.input_shape, row.output_shape) == expected[row.name][0], row.name


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 8, bias=False)

    def forward(self, x):
        y = self.conv(self.pool(self.conv(x)))
        z = y.mean((2, 3))
        return self.fc(self.fc(z))


def test_every_call_of_a_module_called_twice_keeps_its_geometry_and_shapes():
    model = Twice().eval()
    expected = _hook_shapes(model, r(1, 8, 16, 16))
    rows = {row.name: row for row in profile_model(model, [(1, 8, 16, 16)]).rows}
    assert set(rows) == {"conv", "conv (call 2)", "fc", "fc (call 2)"}
    for name, call in (("conv", 0), ("conv (call 2)", 1), ("fc", 0), ("fc (call 2)", 1)):
        assert (rows[name].input_shape, rows[name].output_shape) == expected[name.split(" ")[0]][call]
    # 3x3 conv 8 -> 8: 9 x 8 x 8 per output pixel; 16x16 then 8x8 outputs
    assert rows["conv"].macs == 9 * 64 * 256 and rows["conv (call 2)"].macs == 9 * 64 * 64
    assert rows["conv"].kind == rows["conv (call 2)"].kind == "standard"
    assert rows["conv"].geometry == rows["conv (call 2)"].geometry != ""
    assert rows["fc"].kind == rows["fc (call 2)"].kind == "linear" and rows["fc (call 2)"].macs == 64
    # parameters counted once, in the first call's row
    assert rows["conv"].params == 8 * 8 * 9 + 8 and rows["conv (call 2)"].params == 0


# --- 3. nn.Bilinear by its closed form ---------------------------------------------------------------------------

def test_bilinear_counts_its_closed_form():
    from torch.utils.flop_counter import FlopCounterMode

    model = One(fn=None, m=nn.Identity())
    bi = nn.Bilinear(64, 64, 32)

    class Bi(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bi = bi

        def forward(self, x):
            return self.bi(x, x)

    del model
    result = profile_model(Bi(), [(16, 64)])
    # batch x out x in1 x in2 = 16 x 32 x 64 x 64
    assert result.totals["macs"] == 16 * 32 * 64 * 64 == 2_097_152
    assert "_trilinear" not in result.uncounted
    assert {row.name: row.kind for row in result.rows} == {"bi": "linear"}
    with FlopCounterMode(display=False) as counter:  # FlopCounterMode has no formula for it (README says so)
        bi(r(16, 64), r(16, 64))
    assert counter.get_total_flops() == 0


# --- 4. --check fvcore: the difference split into what fvcore skips and adds --------------------------------------

class NormAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(64)

    def forward(self, x):
        q = self.norm(x).view(2, 16, 4, 16).transpose(1, 2)
        return F.scaled_dot_product_attention(q, q, q)


class NormAttentionBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = NormAttention()
        self.proj = nn.Linear(64, 64, bias=False)

    def forward(self, x):
        return self.proj(self.block(x).transpose(1, 2).reshape(2, 16, 64))


def test_fvcore_difference_is_decomposed_into_what_it_skips_and_adds():
    from fvcore.nn import FlopCountAnalysis

    model = NormAttentionBlock().eval()
    x = torch.zeros(2, 16, 64)
    analysis = FlopCountAnalysis(model, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    fv_block = int(analysis.by_module()["block"])
    fv_layer_norm = int(analysis.by_module_and_operator()["block"]["layer_norm"])
    assert "aten::scaled_dot_product_attention" in analysis.unsupported_ops("block")
    sdpa = 2 * 4 * 16 * 16 * (16 + 16)  # B x H x L x S x (E + Ev)

    result = profile_model(model, [(2, 16, 64)], depth=1)
    check_fvcore(result, lambda: model)
    row = next(r for r in result.rows if r.name == "block")
    assert row.macs == sdpa and row.fvcore == fv_block
    assert row.fvcore_diff == {"skipped": {"scaled_dot_product_attention": sdpa},
                               "added": {"layer_norm": fv_layer_norm}}
    # the parts sum exactly to the difference
    assert sum(row.fvcore_diff["added"].values()) - sum(row.fvcore_diff["skipped"].values()) == fv_block - row.macs
    from dscalc.trace.profile import label

    text = label(row.fvcore_diff)
    assert text.startswith(f"skips scaled_dot_product_attention -{sdpa:,}")  # the larger cause first
    assert f"adds layer_norm +{fv_layer_norm:,}" in text


# --- 5. defaults a user expects ------------------------------------------------------------------------------------

def test_timm_model_without_input_takes_its_own_size():
    pytest.importorskip("timm")
    res = run_in_process("profile", "timm:mobilevitv2_050", "--format", "json")
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["inputs"] == [[1, 3, 256, 256]]  # timm's published input size for mobilevitv2_050
    assert "1x3x256x256 assumed" in data["notes"][0]
    table = run_in_process("profile", "timm:mobilevitv2_050", "--depth", "1", columns=200)
    assert "1x3x256x256 assumed" in table.stdout


def test_torchvision_detection_without_input_asks_for_it():
    pytest.importorskip("torchvision")
    res = run_in_process("profile", "torchvision:fasterrcnn_resnet50_fpn")
    assert res.code == 2 and res.stderr.startswith("dscalc: error: --input: is required")
    assert res.stderr.count("\n") == 1


def _commands() -> list[str]:
    from dscalc.cli import app

    return [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("command", _commands())
def test_help_that_names_an_extra_shows_it_whole(command):
    res = run_in_process(command, "--help", columns=400)
    assert res.code == 0
    assert "pip install 'dscalc')" not in res.stdout  # rich markup ate '[onnx]'
    for start in [i for i in range(len(res.stdout)) if res.stdout.startswith("pip install 'dscalc", i)]:
        assert res.stdout[start + len("pip install 'dscalc")] == "[", res.stdout[start:start + 40]


def test_the_schema_lists_the_same_kinds_as_the_code():
    from importlib.resources import files

    from dscalc.cost.opkinds import OP_KINDS, ROW_KINDS

    schema = json.loads(files("dscalc.report").joinpath("schema.json").read_text())
    assert schema["$defs"]["rowKind"]["enum"] == list(ROW_KINDS)
    assert schema["$defs"]["opKind"]["enum"] == list(OP_KINDS)


# --- every optional import missing: the one-line install message of its extra, exit 1 -----------------------------

BLOCKER = """
import os, sys
for name in filter(None, os.environ.get("DSCALC_TEST_BLOCK", "").split(",")):
    sys.modules[name] = None  # `import name` raises ModuleNotFoundError; importlib.util.find_spec(name) is None
"""

TINY = """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
    def forward(self, x):
        return self.c(x)
"""

#: (blocked module, what the install message names, the command as a user types it)
BLOCKED = [
    ("torch", "dscalc[torch]", ["profile", "{net}", "--input", "1x3x8x8"]),
    ("platformdirs", "dscalc[torch]", ["device"]),
    ("platformdirs", "dscalc[torch]", ["layer", "--k", "3", "--cin", "8", "--cout", "8", "--time"]),
    ("platformdirs", "dscalc[torch]", ["profile", "{net}", "--input", "1x3x8x8", "--predict"]),
    ("fvcore", "dscalc[torch]", ["profile", "{net}", "--input", "1x3x8x8", "--check", "fvcore"]),
    ("onnx", "dscalc[onnx]", ["profile", "{onnx}", "--input", "1x3x8x8"]),
    ("onnxruntime", "dscalc[onnx]", ["profile", "{net}", "--input", "1x3x8x8", "--time", "--runtime", "onnxruntime"]),
    ("litert_torch", "dscalc[litert]", ["profile", "{net}", "--input", "1x3x8x8", "--time", "--runtime", "litert"]),
    ("keras", "dscalc[keras]", ["profile", "{keras_py}"]),
    ("keras", "dscalc[keras]", ["profile", "{h5}", "--input", "1x8"]),
    ("matplotlib", "dscalc[plot]", ["sweep", "--cin", "8", "--plot", "{png}"]),
    ("timm", "pip install timm", ["profile", "timm:resnet18"]),
    ("timm", "pip install timm", ["profile", "timm:resnet18", "--input", "1x3x224x224"]),
    ("torchvision", "pip install torchvision", ["profile", "torchvision:resnet18", "--input", "1x3x224x224"]),
]


@pytest.mark.parametrize(("module", "install", "args"), BLOCKED, ids=[f"{m}-{a[0]}-{i}" for i, (m, _, a) in
                                                                      enumerate(BLOCKED)])
def test_a_missing_optional_import_names_its_extra(tmp_path, module, install, args):
    import os

    from conftest import run_script

    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "net.py").write_text(TINY)
    (tmp_path / "bad.onnx").write_bytes(b"not parsed before the import")
    (tmp_path / "kmodel.py").write_text("import keras\n\ndef build():\n    return keras.Sequential([])\n")
    (tmp_path / "m.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    files = {"net": f"{tmp_path / 'net.py'}:Net", "onnx": str(tmp_path / "bad.onnx"),
             "keras_py": f"{tmp_path / 'kmodel.py'}:build", "h5": str(tmp_path / "m.h5"),
             "png": str(tmp_path / "x.png")}
    path = os.pathsep.join(p for p in (str(tmp_path / "block"), os.environ.get("PYTHONPATH", "")) if p)
    res = run_script(*[a.format(**files) for a in args], env={"PYTHONPATH": path, "DSCALC_TEST_BLOCK": module},
                     timeout=300)
    assert res.code == 1, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1 and "internal error" not in res.stderr, res.stderr
    assert module in res.stderr and install in res.stderr, res.stderr


# --- ops left uncounted say why ------------------------------------------------------------------------------------

def test_an_uncounted_op_says_why():
    # bilinear upsampling: a fixed-weight blend of 4 inputs per output, no learned weight (torchvision's _ops and
    # FlopCounterMode count 0 for it)
    from torch.utils.flop_counter import FlopCounterMode

    model = One(fn=lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"))
    result = profile_model(model, [(1, 3, 8, 8)])
    assert result.totals["macs"] == 0 and result.uncounted == {"upsample_bilinear2d": 1}
    assert any(n.startswith("not counted, by convention: upsample_bilinear2d - interpolation") for n in result.notes)
    with FlopCounterMode(display=False) as counter:
        model(r(1, 3, 8, 8))
    assert counter.get_total_flops() == 0


def test_ops_with_a_reason_have_no_formula():
    from dscalc.cost.opkinds import WHY_NOT_COUNTED
    from dscalc.trace import ops

    for name in WHY_NOT_COUNTED:
        namespace, _, op = name.rpartition("::")
        found = ops.packet(op, namespace or "aten")
        assert found is None or found not in ops.REGISTRY, name

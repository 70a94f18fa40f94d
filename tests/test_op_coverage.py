"""Op coverage by construction (issue 17): every overload of a formula's op, any caller mode, decomposition of ops
without a formula, the low-level attention kernels and their layouts, wrappers, quantized modules, bias additions,
and a walk over torch.utils.flop_counter's registry. Each expected number is derived by hand (the arithmetic is in
the comment) or taken from FlopCounterMode, torchvision's metadata or torch.nn's own parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_ported_oracles import NestedNet  # fvcore's test model: conv 240, fc 200, submod 120
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from dscalc.trace import ops
from dscalc.trace.ops import Call, NeedsValues
from dscalc.trace.profile import profile_model

A = torch.ops.aten


class Fn(nn.Module):
    """A model whose forward is one function of its inputs."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def macs(fn, *shapes) -> int:
    return profile_model(Fn(fn), [tuple(s) for s in shapes]).totals["macs"]


def fcm_macs(model, *inputs) -> int:
    """FlopCounterMode's FLOPs / 2 (it counts 2 per MAC), run in normal mode without gradients."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


# --- the reproducers of issue 17 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["inference_mode", "no_grad", "enable_grad"])
def test_resnet18_counts_the_same_in_every_caller_mode(mode):
    # torchvision's metadata: resnet18 _ops = 1.814 GMACs; FlopCounterMode in normal mode: 1,814,073,344
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18().eval()
    with getattr(torch, mode)():
        result = profile_model(model, [(1, 3, 224, 224)])
    assert result.totals["macs"] == 1_814_073_344 == fcm_macs(model, torch.zeros(1, 3, 224, 224))
    assert result.uncounted == {}


def test_mm_with_out_counts():
    # torch's test_flop_counter.py::test_addmm_out: torch.mm(x, x, out=y) on 10x10 is 2,000 FLOPs = 10*10*10 MACs
    assert macs(lambda x: torch.mm(x, x, out=torch.empty(10, 10, device=x.device)), (10, 10)) == 1_000


@pytest.mark.parametrize("fn,shapes,expected", [
    # addmm(out=): 10x10 @ 10x10 = 1,000
    (lambda x: torch.addmm(x, x, x, out=torch.empty(10, 10, device=x.device)), [(10, 10)], 1_000),
    # bmm(out=): 3 batches of 5x5 @ 5x5 = 3*125 = 375
    (lambda x: torch.bmm(x, x, out=torch.empty(3, 5, 5, device=x.device)), [(3, 5, 5)], 375),
    # baddbmm(out=): the same product, plus the added input
    (lambda x: torch.baddbmm(x, x, x, out=torch.empty(3, 5, 5, device=x.device)), [(3, 5, 5)], 375),
    # convolution.out: 3->4, 3x3 on 8x8 valid -> 6x6: 4*3*9*36 = 3,888
    (lambda x, w: A.convolution.out(x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                    out=torch.empty(1, 4, 6, 6, device=x.device)), [(1, 3, 8, 8), (4, 3, 3, 3)], 3_888),
    # mm.dtype overload: 4x5 @ 5x6 = 120
    (lambda a, b: A.mm.dtype(a, b, torch.float32), [(4, 5), (5, 6)], 120),
])
def test_every_overload_of_an_op_counts(fn, shapes, expected):
    assert macs(fn, *shapes) == expected


def test_an_op_arriving_undecomposed_is_decomposed():
    # aten.conv2d / aten.linear reach a dispatch mode undecomposed under inference mode: called directly they
    # are decomposed into convolution / addmm. conv 3->4 k3 on 8x8: 3,888; linear 36->5 on 4 rows: 4*36*5 = 720
    assert macs(lambda x, w: A.conv2d.default(x, w), (1, 3, 8, 8), (4, 3, 3, 3)) == 3_888
    assert macs(lambda x, w: A.linear.default(x, w), (4, 36), (5, 36)) == 720


@pytest.mark.parametrize("fn,shapes,expected", [
    # torch.mv: 5x7 matrix times a 7-vector = 35 (decomposition table entry turned into a formula)
    (lambda a, b: torch.mv(a, b), [(5, 7), (7,)], 35),
    # addbmm: sum over 3 batches of 4x5 @ 5x6 = 3*4*5*6 = 360
    (lambda s, a, b: torch.addbmm(s, a, b), [(4, 6), (3, 4, 5), (3, 5, 6)], 360),
    # dot of two 7-vectors = 7
    (lambda a: torch.dot(a, a), [(7,)], 7),
    # fvcore's TestFlopCountHandles::test_complicated_einsum: "nc,nchw->hw" on 3x4, 3x4x2x3 = 72
    (lambda a, b: torch.einsum("nc,nchw->hw", a, b), [(3, 4), (3, 4, 2, 3)], 72),
])
def test_matrix_products_without_a_module(fn, shapes, expected):
    assert macs(fn, *shapes) == expected


def test_an_op_with_no_decomposition_and_no_macs_is_named():
    # bilinear upsampling does no multiply-accumulate in dscalc's convention: 0 MACs, listed by name and count
    result = profile_model(Fn(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")), [(2, 2, 2, 2)])
    assert result.totals["macs"] == 0 and result.uncounted == {"upsample_bilinear2d": 1}


# --- attention kernels and their layouts ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,extra", [("_scaled_dot_product_efficient_attention", (None, False)),
                                        ("_scaled_dot_product_flash_attention", ()),
                                        ("_scaled_dot_product_cudnn_attention", (None, False))])
def test_fused_sdpa_kernels(name, extra):
    # torch's test_flop_counter.py::test_sdpa: batch 4, 8 heads, 128 queries and keys, head dim 64 -> 134,217,728
    # FLOPs = 67,108,864 MACs (4*8*128*128*(64+64)); with 256 keys 268,435,456 FLOPs = 134,217,728 MACs
    op = getattr(A, name)
    q, k = (4, 8, 128, 64), (4, 8, 256, 64)
    assert macs(lambda a, b, c: op(a, b, c, *extra), q, q, q) == 67_108_864
    if "flash" not in name:  # (flash needs equal lengths)
        assert macs(lambda a, b, c: op(a, b, c, *extra), q, k, k) == 134_217_728


def test_flash_and_efficient_forward_take_batch_seq_heads_dim():
    # layout (B, S, H, D) = (2, 10, 4, 16): 2 batches x 4 heads x 10 x 10 scores x (16 + 16) = 25,600
    shape = (2, 10, 4, 16)
    flash = macs(lambda q, k, v: A._flash_attention_forward(q, k, v, None, None, 10, 10, 0.0, False, False),
                 shape, shape, shape)
    efficient = macs(lambda q, k, v: A._efficient_attention_forward(q, k, v, None, None, None, 10, 10, 0.0, 0, False),
                     shape, shape, shape)
    assert flash == efficient == 2 * 4 * 10 * 10 * 32 == 25_600


def _call(op, *args):
    return Call(op, args, {}, None)


def test_variable_length_attention():
    # packed sequences of lengths 3 and 5 (offsets 0, 3, 8), 4 heads of 16: 4*(3*3 + 5*5)*(16+16) = 4,352 MACs,
    # FlopCounterMode's own formula says the same (in FLOPs)
    from torch.utils.flop_counter import _flash_attention_forward_flop

    q = torch.zeros(8, 4, 16)
    offsets = torch.tensor([0, 3, 8], dtype=torch.int32)
    handler = ops.handler_for(A._flash_attention_forward.default)
    count = handler.macs(_call(A._flash_attention_forward.default, q, q, q, offsets, offsets, 5, 5, 0.0, False, False))
    assert count.macs == 4 * (9 + 25) * 32 == 4_352
    assert _flash_attention_forward_flop(q, q, q, offsets, offsets, 5, 5) == 2 * 4_352
    # the efficient kernel packs the same tokens as (1, total, H, D)
    handler = ops.handler_for(A._efficient_attention_forward.default)
    packed = q.unsqueeze(0)
    assert handler.macs(_call(A._efficient_attention_forward.default, packed, packed, packed, None, offsets,
                              offsets, 5, 5, 0.0, 0, False)).macs == 4_352
    # on the meta device the lengths are values it does not have: the tracer is told to run for real
    with pytest.raises(NeedsValues):
        handler.macs(_call(A._efficient_attention_forward.default, packed, packed, packed, None,
                           offsets.to("meta"), offsets.to("meta"), 5, 5, 0.0, 0, False))


def test_grouped_query_attention():
    # 8 query heads share 2 key/value heads: 1*8*16*16*(32+32) = 131,072 (every query head attends in full)
    q, kv = (1, 8, 16, 32), (1, 2, 16, 32)
    assert macs(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, enable_gqa=True), q, kv, kv) == 131_072


# --- the registry walk ------------------------------------------------------------------------------------------------

def test_every_op_flop_counter_counts_has_a_formula_or_a_reason():
    # A torch release that adds a formula to FlopCounterMode fails here instead of dscalc silently counting 0.
    missing = [str(op) for op in flop_registry
               if ops.key_of(op) not in ops.REGISTRY and str(op) not in ops.NOT_COUNTED]
    assert missing == []
    assert all(ops.REGISTRY[ops.key_of(op)].macs is not None for op in flop_registry if ops.key_of(op) in ops.REGISTRY)


def test_formulas_agree_with_flop_counter_on_forward_ops():
    # FlopCounterMode's own formulas (its registry, FLOPs = 2 x MACs) as the oracle, one call of each op (on meta:
    # the fused attention kernels have no CPU implementation)
    def z(*shape):
        return torch.zeros(*shape, device="meta")

    a, b, s = z(4, 5), z(5, 6), z(4, 6)
    x, w = z(2, 6, 9, 9), z(8, 3, 3, 3)
    q = z(2, 3, 7, 16)
    cases = [
        (A.mm.default, (a, b)),
        (A.addmm.default, (s, a, b)),
        (A.bmm.default, (q[0], q[0].transpose(-1, -2))),
        (A.baddbmm.default, (z(3, 7, 7), q[0], q[0].transpose(-1, -2))),
        (A.convolution.default, (x, w, None, [2, 2], [1, 1], [1, 1], False, [0, 0], 2)),
        (A.convolution.default, (z(1, 8, 5, 5), z(8, 2, 4, 4), None, [2, 2], [1, 1], [1, 1], True, [1, 1], 1)),
        (A._scaled_dot_product_efficient_attention.default, (q, q, q, None, False)),
    ]
    for op, args in cases:
        out = op(*args)
        assert ops.handler_for(op).macs(Call(op, args, {}, out)).macs * 2 == \
            flop_registry[op.overloadpacket](*args, out_val=out), op


# --- wrappers -----------------------------------------------------------------------------------------------------



FVCORE_NESTED = {"conv": 240, "fc": 200, "submod.conv": 20, "submod.fc": 100}


def test_data_parallel_is_unwrapped():
    # fvcore's test_data_parallel: 560 with the inner names; test_data_parallel_root_scope: Linear(10,10) on 10x10
    # = 1,000
    result = profile_model(nn.DataParallel(NestedNet()), [(1, 4, 5)])
    assert result.totals["macs"] == 560
    assert {r.name: r.macs for r in result.rows if r.macs} == FVCORE_NESTED
    assert any("DataParallel" in n for n in result.notes)
    assert profile_model(nn.DataParallel(nn.Linear(10, 10)), [(10, 10)]).totals["macs"] == 1_000


def test_distributed_data_parallel_is_unwrapped(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch without torch.distributed")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = nn.parallel.DistributedDataParallel(NestedNet())
        result = profile_model(model, [(1, 4, 5)])
    finally:
        dist.destroy_process_group()
    assert result.totals["macs"] == 560 and {r.name: r.macs for r in result.rows if r.macs} == FVCORE_NESTED
    assert any("DistributedDataParallel" in n for n in result.notes)


def test_compiled_module_is_unwrapped():
    result = profile_model(torch.compile(NestedNet()), [(1, 4, 5)])
    assert result.totals["macs"] == 560 and {r.name: r.macs for r in result.rows if r.macs} == FVCORE_NESTED
    assert any("OptimizedModule" in n for n in result.notes)


def test_parametrizations_are_named_after_their_module():
    # weight_norm keeps g (8x1x1x1) and v (8x3x3x3) for the conv's weight: 8 + 216 + 8 (bias) = 232 params, the
    # conv's 8*3*9*36 = 7,776 MACs on 8x8 -> 6x6; spectral_norm keeps the linear's weight (5x288) and bias, and even
    # in eval mode computes sigma = u . (W v): a 5x288 matrix-vector product (1,440) and a 5-dot (5), beside the
    # linear's own 288*5 = 1,440
    from torch.nn.utils import parametrizations as P

    model = nn.Sequential(P.weight_norm(nn.Conv2d(3, 8, 3)), nn.Flatten(), P.spectral_norm(nn.Linear(288, 5))).eval()
    result = profile_model(model, [(1, 3, 8, 8)])
    rows = {r.name: r for r in result.rows}
    assert set(rows) == {"0", "2"} and rows["0"].type == "Conv2d" and rows["2"].type == "Linear"
    assert rows["0"].macs == 7_776 and rows["0"].params == 232
    assert rows["2"].macs == 1_440 + 1_440 + 5 and rows["2"].params == 288 * 5 + 5
    assert result.totals["params"] == sum(p.numel() for p in model.parameters())
    assert any("_WeightNorm" in n and "_SpectralNorm" in n for n in result.notes)


# --- quantized modules --------------------------------------------------------------------------------------------

def test_dynamic_quantized_linear():
    # quantize_dynamic of Linear(64, 32) + ReLU + Linear(32, 10) on 4 rows: 4*64*32 + 4*32*10 = 9,472 int8 MACs;
    # params as the float model's sum(p.numel()) = 2,080 + 330 = 2,410; weights at 1 byte (2,048 + 320) and the
    # float32 biases at 4 (42 x 4 = 168): 2,536 bytes
    import torch.ao.quantization as Q

    float_model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model = Q.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
    result = profile_model(model, [(4, 64)])
    assert result.totals["macs"] == result.totals["int8_macs"] == 9_472
    assert result.totals["params"] == sum(p.numel() for p in float_model.parameters()) == 2_410
    assert result.memory["weights"] == 2_048 + 320 + 42 * 4
    assert [(r.name, r.macs, r.dtype) for r in result.rows] == [("0", 8_192, "int8"), ("2", 1_280, "int8")]
    assert any("real CPU run" in n for n in result.notes)


class QuantNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import torch.ao.quantization as Q

        self.quant, self.dequant = Q.QuantStub(), Q.DeQuantStub()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 4 * 4, 10)
        self.fc_relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        return self.dequant(self.fc_relu(self.fc(torch.flatten(x, 1))))


def test_static_quantized_conv_and_linear_with_fused_relu():
    # conv 4->8, 3x3, stride 2, pad 1, groups 2 on 2x4x8x8 -> 2x8x4x4: 2*8*(4/2)*9*16 = 4,608 MACs;
    # linear 128->10 on 2 rows: 2,560 MACs; both int8, fused with their ReLU (ConvReLU2d, LinearReLU)
    import torch.ao.quantization as Q

    model = QuantNet().eval()
    model.qconfig = Q.get_default_qconfig("x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm")
    Q.fuse_modules(model, [["conv", "relu"], ["fc", "fc_relu"]], inplace=True)
    Q.prepare(model, inplace=True)
    model(torch.rand(2, 4, 8, 8))
    Q.convert(model, inplace=True)
    result = profile_model(model, [(2, 4, 8, 8)])
    rows = {r.name: r for r in result.rows}
    assert rows["conv"].macs == 4_608 and rows["conv"].dtype == "int8" and rows["conv"].kind == "grouped"
    assert rows["fc"].macs == 2_560 and rows["fc"].dtype == "int8"
    assert result.totals["int8_macs"] == result.totals["macs"] == 7_168
    # the weights as the float layers had them: conv 8*2*9 + 8, linear 128*10 + 10
    assert result.totals["params"] == 152 + 1_290


# --- bias additions -------------------------------------------------------------------------------------------------

def test_bias_additions_reconcile_with_ptflops():
    # ptflops counts Conv2d(3, 2, 3) on 1x3x224x224 as 2,759,904 = 2,661,336 MACs (3*2*9*222*222) plus 98,568
    # bias additions (2 channels x 222 x 222)
    result = profile_model(nn.Conv2d(3, 2, 3), [(1, 3, 224, 224)])
    assert result.totals["macs"] == 2_661_336 and result.totals["bias_adds"] == 98_568
    assert result.totals["macs"] + result.totals["bias_adds"] == 2_759_904


def test_linear_bias_additions():
    # Linear(8, 4) on 5 rows: 160 MACs, 20 bias additions (one per output); without bias none
    assert profile_model(nn.Linear(8, 4), [(5, 8)]).totals["bias_adds"] == 20
    assert profile_model(nn.Linear(8, 4, bias=False), [(5, 8)]).totals["bias_adds"] == 0


# --- identical JSON in every caller mode --------------------------------------------------------------------------

MODE_MODELS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5",
               "squeezenet1_1", "densenet121", "regnet_x_400mf", "vit_b_16", "swin_t"]


@pytest.mark.parametrize("name", MODE_MODELS)
def test_profile_json_is_identical_in_every_caller_mode(name):
    tv = pytest.importorskip("torchvision")
    from dscalc.report.profile import counts

    try:
        with torch.device("meta"):
            model = tv.models.get_model(name, weights=None).eval()
    except NotImplementedError:  # a constructor that copies data: build it on the CPU
        model = tv.models.get_model(name, weights=None).eval()
    documents = []
    for mode in (torch.inference_mode, torch.no_grad, torch.enable_grad):
        with mode():
            result = profile_model(model, [(1, 3, 224, 224)])
        documents.append(json.dumps(counts(result, {"model": name, "depth": None}).data, sort_keys=True))
    assert documents[0] == documents[1] == documents[2]
    weights = tv.models.get_model_weights(name).DEFAULT
    assert json.loads(documents[0])["totals"]["params"] == weights.meta["num_params"]

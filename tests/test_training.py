"""Training cost, backward MACs: 25 layer configurations derived by hand (the arithmetic in each comment), each
checked three ways - dscalc's closed form (`cost.training`), torch's FlopCounterMode over a real CPU backward, and
dscalc's autograd trace (`trace.training`, a real backward on fake CPU tensors).

FlopCounterMode (torch 2.14.1) is right for groups = 1 and wrong for grouped convolutions: its
`conv_backward_flop` builds the weight gradient as a conv over all C_in x C_out channel pairs and never divides by
`groups`. The grouped cases are checked against FlopCounterMode with that one division added (`_corrected`), and
the uncorrected figure is asserted too - the issue's measurement, 115,605,504 MACs for the weight gradient of a 3x3
depthwise conv over 64x56x56, 64x its 1,806,336. FlopCounterMode has no formula for the CPU's fused attention and
LSTM kernels: attention is completed with torch's own `sdpa_flop_count` formulas, the fused LSTM is checked by hand
and by the trace only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as TF
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from dscalc.cost import layers as L
from dscalc.cost import training as T
from dscalc.trace.training import trace_training

aten = torch.ops.aten


class Inside(nn.Module):
    """A layer inside a network: its input comes from a learnable (MAC-free) scale, so it needs a gradient."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.layer = layer

    def forward(self, *xs: torch.Tensor) -> Any:
        out = self.layer(*(x * self.scale for x in xs))
        return out[0] if isinstance(out, tuple) else out


class MatmulWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(32, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.w)


class Bmm(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)


class Attention(nn.Module):
    def __init__(self, math: bool) -> None:
        super().__init__()
        self.math = math

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.math:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.MATH):
                return TF.scaled_dot_product_attention(q, k, v)
        return TF.scaled_dot_product_attention(q, k, v)


def frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


@dataclass
class Case:
    build: Callable[[], nn.Module]
    shapes: list[tuple[int, ...]]
    forward: int
    grad_input: int
    grad_weight: int
    closed: T.TrainingRow  # dscalc's closed form
    recompute: int = 0
    groups: int = 1  # > 1: FlopCounterMode needs the corrected formula
    inside: bool = True  # the input needs a gradient (a layer inside a network)
    frozen: bool = False
    flop_counter: bool = True  # FlopCounterMode can count it
    context: Any = field(default=None)  # a context manager factory for FlopCounterMode and the trace


def conv(*a: Any, **kw: Any) -> Any:
    return L.conv(*a, **kw)


CASES: dict[str, Case] = {
    # 3^2 * 64 * 128 * 56^2 = 9 * 8,192 * 3,136 = 231,211,008 (each gradient the same)
    "standard 3x3": Case(lambda: nn.Conv2d(64, 128, 3, padding=1, bias=False), [(1, 64, 56, 56)],
                         231_211_008, 231_211_008, 231_211_008, T.backward(conv(64, 128, 3, 56, padding=1))),
    # out (32 + 4 - 5) // 2 + 1 = 16; 5^2 * 32 * 64 * 16^2 = 25 * 2,048 * 256 = 13,107,200
    "strided 5x5/s2": Case(lambda: nn.Conv2d(32, 64, 5, stride=2, padding=2, bias=False), [(1, 32, 32, 32)],
                           13_107_200, 13_107_200, 13_107_200,
                           T.backward(conv(32, 64, 5, 32, stride=2, padding=2))),
    # out (20 + 4 - 4 - 1) + 1 = 20; 3^2 * 16 * 32 * 20^2 = 9 * 512 * 400 = 1,843,200
    "dilated 3x3/d2": Case(lambda: nn.Conv2d(16, 32, 3, padding=2, dilation=2, bias=False), [(1, 16, 20, 20)],
                           1_843_200, 1_843_200, 1_843_200, T.backward(conv(16, 32, 3, 20, padding=2, dilation=2))),
    # 64 * 256 * 28^2 = 16,384 * 784 = 12,845,056
    "pointwise 1x1": Case(lambda: nn.Conv2d(64, 256, 1, bias=False), [(1, 64, 28, 28)],
                          12_845_056, 12_845_056, 12_845_056, T.backward(conv(64, 256, 1, 28))),
    # weight (128, 16, 3, 3): 3^2 * 16 * 128 * 28^2 = 18,432 * 784 = 14,450,688; FlopCounterMode: 4x the weight grad
    "grouped 3x3/g4": Case(lambda: nn.Conv2d(64, 128, 3, padding=1, groups=4, bias=False), [(1, 64, 28, 28)],
                           14_450_688, 14_450_688, 14_450_688, T.backward(conv(64, 128, 3, 28, padding=1, groups=4)),
                           groups=4),
    # the depthwise conv: 3^2 * 64 * 56^2 = 576 * 3,136 = 1,806,336
    "depthwise 3x3": Case(lambda: nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), [(1, 64, 56, 56)],
                          1_806_336, 1_806_336, 1_806_336, T.backward(conv(64, 64, 3, 56, padding=1, groups=64)),
                          groups=64),
    # depth multiplier 2: weight (64, 1, 3, 3): 3^2 * 64 * 28^2 = 576 * 784 = 451,584
    "depthwise dm2": Case(lambda: nn.Conv2d(32, 64, 3, padding=1, groups=32, bias=False), [(1, 32, 28, 28)],
                          451_584, 451_584, 451_584,
                          T.backward(L.depthwise(32, 3, 28, depth_multiplier=2, padding=1)), groups=32),
    # the grouped transposed conv: weight (64, 8, 4, 4), scattered over the input:
    # 64 * (32/4) * 4^2 * 28^2 = 8,192 * 784 = 6,422,528
    "transposed k4/s2/g4": Case(lambda: nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1, groups=4, bias=False),
                                [(1, 64, 28, 28)], 6_422_528, 6_422_528, 6_422_528,
                                T.backward(conv(64, 32, 4, 28, stride=2, padding=1, groups=4, transposed=True)),
                                groups=4),
    # output padding 1: 16 * 8 * 3^2 * 14^2 = 1,152 * 196 = 225,792
    "transposed output_padding": Case(
        lambda: nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1, bias=False), [(1, 16, 14, 14)],
        225_792, 225_792, 225_792,
        T.backward(conv(16, 8, 3, 14, stride=2, padding=1, output_padding=1, transposed=True))),
    # 5 * 8 * 16 * 100 = 64,000
    "conv1d k5": Case(lambda: nn.Conv1d(8, 16, 5, padding=2, bias=False), [(1, 8, 100)],
                      64_000, 64_000, 64_000, T.backward(conv(8, 16, 5, (100,), padding=2))),
    # 3^3 * 4 * 8 * 8^3 = 864 * 512 = 442,368
    "conv3d k3": Case(lambda: nn.Conv3d(4, 8, 3, padding=1, bias=False), [(1, 4, 8, 8, 8)],
                      442_368, 442_368, 442_368, T.backward(conv(4, 8, 3, (8, 8, 8), padding=1))),
    # out (12 - 3) // 3 + 1 = 4; 3^2 * 8 * 8 * 4^2 = 576 * 16 = 9,216
    "strided 3x3/s3 valid": Case(lambda: nn.Conv2d(8, 8, 3, stride=3, bias=False), [(1, 8, 12, 12)],
                                 9_216, 9_216, 9_216, T.backward(conv(8, 8, 3, 12, stride=3))),
    # 3^2 * 8 * 16 * 10^2 = 115,200; its bias gradient: 16 * 10^2 = 1,600 additions (not MACs)
    "biased 3x3": Case(lambda: nn.Conv2d(8, 16, 3, padding=1), [(1, 8, 10, 10)],
                       115_200, 115_200, 115_200, T.backward(conv(8, 16, 3, 10, padding=1, bias=True))),
    # 8 * 512 * 1,000 = 4,096,000; bias gradient 8 * 1,000 = 8,000 additions
    "linear": Case(lambda: nn.Linear(512, 1000), [(8, 512)], 4_096_000, 4_096_000, 4_096_000,
                   T.backward(L.linear(512, 1000, batch=8))),
    # 2 * 10 tokens: 20 * 64 * 32 = 40,960
    "linear on tokens": Case(lambda: nn.Linear(64, 32, bias=False), [(2, 10, 64)], 40_960, 40_960, 40_960,
                             T.matmul(20, 64, 32, b_is_weight=True)),
    # A (4, 16, 32) @ B (4, 32, 8): 4 * 16 * 32 * 8 = 16,384; dA and dB both gradients of activations: 32,768
    "bmm of activations": Case(Bmm, [(4, 16, 32), (4, 32, 8)], 16_384, 32_768, 0, T.matmul(16, 32, 8, batch=4)),
    # x (16, 32) @ W (32, 8): 16 * 32 * 8 = 4,096 each
    "matmul with a weight": Case(MatmulWeight, [(16, 32)], 4_096, 4_096, 4_096,
                                 T.matmul(16, 32, 8, b_is_weight=True)),
    # B2 H4 L10 S12 E16 Ev8 (unequal head sizes: the CPU takes the math kernel anyway): B*H*L*S = 960; forward
    # 960 * (16 + 8) = 23,040; backward dV 960*8 + dP 960*8 + dQ 960*16 + dK 960*16 = 960 * 48 = 46,080
    "attention, math kernel": Case(lambda: Attention(True), [(2, 4, 10, 16), (2, 4, 12, 16), (2, 4, 12, 8)],
                                   23_040, 46_080, 0, T.attention(8, 10, 12, 16, 8)),
    # the CPU's fused flash kernel (chosen for equal head sizes, E = Ev = 16): forward 960 * (16 + 16) = 30,720;
    # backward 960 * (16 + 16 + 16 + 16) = 61,440, and it recomputes Q K^T from its log-sum-exp: 960 * 16 = 15,360
    "attention, fused (CPU flash)": Case(lambda: Attention(False), [(2, 4, 10, 16), (2, 4, 12, 16), (2, 4, 12, 16)],
                                         30_720, 61_440, 0, T.attention(8, 10, 12, 16, 16, fused=True),
                                         recompute=15_360),
    # I16 H32 T10 B4, 1 gate: forward 10*4*32*(16 + 32) = 61,440; grad-weight the same; grad-input: x 10*4*32*16 =
    # 20,480 + hidden (10 - 1)*4*32*32 = 36,864 -> 57,344
    "rnn": Case(lambda: nn.RNN(16, 32, batch_first=True), [(4, 10, 16)], 61_440, 57_344, 61_440,
                T.recurrent("rnn", 16, 32, 10, 4)),
    # 3 gates: forward 10*4*96*48 = 184,320; grad-input 10*4*96*16 = 61,440 + 9*4*96*32 = 110,592 -> 172,032
    "gru": Case(lambda: nn.GRU(16, 32, batch_first=True), [(4, 10, 16)], 184_320, 172_032, 184_320,
                T.recurrent("gru", 16, 32, 10, 4)),
    # 4 gates, oneDNN off (decomposed): forward 10*4*128*48 = 245,760; grad-input 10*4*128*16 = 81,920 +
    # 9*4*128*32 = 147,456 -> 229,376
    "lstm, decomposed": Case(lambda: nn.LSTM(16, 32, batch_first=True), [(4, 10, 16)], 245_760, 229_376, 245_760,
                             T.recurrent("lstm", 16, 32, 10, 4),
                             context=lambda: torch.backends.mkldnn.flags(enabled=False)),
    # the CPU's fused oneDNN LSTM computes every gradient: the input's and all 10 hidden steps', 10*4*128*(16 + 32)
    # = 245,760; FlopCounterMode has no formula for it (counts 0)
    "lstm, fused (oneDNN)": Case(lambda: nn.LSTM(16, 32, batch_first=True), [(4, 10, 16)], 245_760, 245_760, 245_760,
                                 T.recurrent("lstm", 16, 32, 10, 4, fused=True), flop_counter=False),
    # a model's first layer: no input gradient; 3^2 * 3 * 8 * 16^2 = 216 * 256 = 55,296
    "first layer": Case(lambda: nn.Conv2d(3, 8, 3, padding=1, bias=False), [(1, 3, 16, 16)], 55_296, 0, 55_296,
                        T.backward(conv(3, 8, 3, 16, padding=1), input_grad=False), inside=False),
    # a frozen layer inside a network: no weight gradient; 8 * 8 * 16^2 = 16,384
    "frozen 1x1": Case(lambda: frozen(nn.Conv2d(8, 8, 1, bias=False)), [(1, 8, 16, 16)], 16_384, 16_384, 0,
                       T.backward(conv(8, 8, 1, 16), weight_grad=False), frozen=True),
}


def _corrected(grad_out, x, w, bias, stride, padding, dilation, transposed, output_padding, groups, output_mask,
               out_shape=None, **kw):
    """torch's own conv_backward_flop with the one division it forgets: the weight gradient over `groups`."""
    args = (grad_out, x, w, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = flop_counter.conv_backward_flop(*args, [output_mask[0], False, False], out_val=out_shape)
    grad_weight = flop_counter.conv_backward_flop(*args, [False, output_mask[1], False], out_val=out_shape)
    assert grad_weight % groups == 0
    return grad_input + grad_weight // groups


#: torch's own attention formulas for the CPU's fused flash kernel, which FlopCounterMode does not register
_CPU_FLASH = {
    aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *a, out_shape=None, **kw: flop_counter.sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *a, out_shape=None, **kw: flop_counter.sdpa_backward_flop_count(g, q, k, v),
}


def flop_counter_macs(case: Case, mapping: dict | None = None) -> tuple[int, int]:
    """FlopCounterMode's forward and backward MACs (its FLOPs / 2) over a real CPU run."""
    torch.manual_seed(0)
    module = case.build()
    if case.inside:
        module = Inside(module)
        if case.frozen:
            frozen(module.layer)
    xs = [torch.randn(s) for s in case.shapes]
    context = case.context() if case.context else torch.backends.mkldnn.flags(enabled=True)
    with context:
        with FlopCounterMode(display=False, custom_mapping=mapping or {}) as counter:
            module(*xs)
        forward = counter.get_total_flops()
        with FlopCounterMode(display=False, custom_mapping=mapping or {}) as counter:
            out = module(*xs)
            out = out[0] if isinstance(out, tuple) else out
            out.backward(torch.ones_like(out))
        total = counter.get_total_flops()
    assert forward % 2 == 0 and total % 2 == 0
    return forward // 2, (total - forward) // 2


def traced(case: Case) -> dict[str, int]:
    with torch.device("meta"):
        module = case.build()
    if case.inside:
        module = Inside(module)
        if case.frozen:
            frozen(module.layer)
    context = case.context() if case.context else torch.backends.mkldnn.flags(enabled=True)
    with context:
        return trace_training(module, case.shapes, "sgd").training.totals


@pytest.mark.parametrize("name", list(CASES))
def test_closed_form_backward_by_hand(name):
    c = CASES[name]
    assert (c.closed.forward_macs, c.closed.grad_input_macs, c.closed.grad_weight_macs, c.closed.recompute_macs) \
        == (c.forward, c.grad_input, c.grad_weight, c.recompute)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.flop_counter])
def test_flop_counter_mode_real_backward(name):
    c = CASES[name]
    mapping: dict[Any, Any] = {}
    if c.groups > 1:
        mapping[aten.convolution_backward] = _corrected
    if "fused" in name:
        mapping.update(_CPU_FLASH)
    forward, backward = flop_counter_macs(c, mapping)
    assert forward == c.forward
    assert backward == c.grad_input + c.grad_weight + c.recompute


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.groups > 1])
def test_flop_counter_mode_overcounts_grouped_weight_gradients(name):
    """Uncorrected, FlopCounterMode counts the weight gradient `groups` times: 64x for the issue's depthwise conv
    (1,806,336 + 64 x 1,806,336 = 1,806,336 + 115,605,504), 4x for its grouped transposed conv."""
    c = CASES[name]
    _, backward = flop_counter_macs(c)
    assert backward == c.grad_input + c.groups * c.grad_weight
    assert c.closed.flop_counter_grad_weight == c.groups * c.grad_weight
    if name == "depthwise 3x3":
        assert backward - c.grad_input == 115_605_504


def test_flop_counter_mode_does_not_count_the_fused_lstm():
    assert flop_counter_macs(CASES["lstm, fused (oneDNN)"]) == (0, 0)


@pytest.mark.parametrize("name", list(CASES))
def test_autograd_trace(name):
    c = CASES[name]
    tot = traced(c)
    assert (tot["forward_macs"], tot["grad_input_macs"], tot["grad_weight_macs"], tot["recompute_macs"]) \
        == (c.forward, c.grad_input, c.grad_weight, c.recompute)


def test_bias_gradient_additions_are_named_not_macs():
    # conv 8->16 on 10x10: one addition per output element, 16 * 100 = 1,600; linear 8 x 1,000 = 8,000
    assert CASES["biased 3x3"].closed.grad_bias_adds == 1_600
    assert CASES["linear"].closed.grad_bias_adds == 8_000
    assert traced(CASES["biased 3x3"])["grad_bias_adds"] == 1_600
    assert traced(CASES["linear"])["grad_bias_adds"] == 8_000


def test_checkpointing_recomputes_the_forward():
    """torch.utils.checkpoint keeps only its block's input and runs the block's forward again during backward:
    the recomputed MACs are named apart."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(),
                                       nn.Conv2d(8, 8, 3, padding=1, bias=False))

        def forward(self, x):
            return checkpoint(self.block, x, use_reentrant=False)

    with torch.device("meta"):
        model = Inside(Checkpointed())
    tot = trace_training(model, [(1, 8, 16, 16)], "sgd").training.totals
    # each conv 3^2 * 8 * 8 * 16^2 = 147,456: forward 2 x 147,456 = 294,912, and each gradient the same; the second
    # conv's weight gradient needs the ReLU's output, so torch recomputes the first conv (and stops there): 147,456
    assert (tot["forward_macs"], tot["grad_input_macs"], tot["grad_weight_macs"], tot["recompute_macs"]) \
        == (294_912, 294_912, 294_912, 147_456)


def test_every_weighted_kind_has_a_backward():
    """The registry of backward closed forms covers every weighted kind of the kind registry."""
    from dscalc.cost.kinds import WEIGHTED

    assert set(T.BACKWARD) == set(WEIGHTED)
    layers = {"standard": conv(8, 8, 3, 8), "grouped": conv(8, 8, 3, 8, groups=2), "depthwise": L.depthwise(8, 3, 8),
              "pointwise": conv(8, 8, 1, 8), "transposed": conv(8, 8, 3, 8, transposed=True), "linear": L.linear(8, 4)}
    for kind in WEIGHTED:
        one = layers[kind]
        assert one.kind == kind
        row = T.backward(one)
        assert row.grad_input_macs == row.grad_weight_macs == one.macs > 0


def test_flop_counter_mode_on_torchvision_mobilenet_v2():
    """A whole real network: FlopCounterMode over torchvision's mobilenet_v2 (1x3x224x224, real CPU backward) counts
    dscalc's backward plus (groups - 1) x the weight gradient of each of its 17 depthwise convs; with the one
    division restored it counts dscalc's backward exactly."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2().train()
    x = torch.randn(1, 3, 224, 224)

    def backward_macs(mapping: dict) -> int:
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            y = model(x)
        forward = counter.get_total_flops()
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            y = model(x)
            y.backward(torch.ones_like(y))
        return (counter.get_total_flops() - forward) // 2

    with torch.device("meta"):
        traced = trace_training(torchvision.models.mobilenet_v2(), [(1, 3, 224, 224)], "sgd").training
    ours = traced.totals["backward_macs"]
    # torchvision's 300,774,272 MACs, the first conv's grad-input (10,838,016) not computed: 2 x 300,774,272 -
    # 10,838,016 = 590,710,528
    assert ours == 590_710_528
    assert backward_macs({aten.convolution_backward: _corrected}) == ours
    over = sum((r.flop_counter_grad_weight or r.grad_weight_macs) - r.grad_weight_macs for r in traced.rows)
    assert backward_macs({}) == ours + over
    assert over == 5_248_365_696  # FlopCounterMode's backward for mobilenet_v2: 9.9x the exact one

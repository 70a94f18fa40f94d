"""Layer 1: closed forms against values worked by hand (arithmetic in the comments) and invariants."""

from fractions import Fraction

import pytest

from dscalc.cost import formulas as F
from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv, depthwise, linear, pointwise


def test_mobilenet_table3_one_layer():
    # MobileNets paper, Table 3 / section 3.3: 14x14x512 input, 3x3, 512 -> 512.
    # standard:  3*3*512*512*14*14 = 9*262144*196 = 462,422,016 MACs; 9*512*512 = 2,359,296 params
    # separable: 3*3*512*14*14 + 512*512*14*14 = 903,168 + 51,380,224 = 52,283,392 MACs;
    #            9*512 + 512*512 = 4,608 + 262,144 = 266,752 params
    std = conv(512, 512, 3, 14, padding="same")
    sep = separable_of(std)
    assert (std.macs, std.params) == (462_422_016, 2_359_296)
    assert sep is not None
    assert (sep.macs, sep.params) == (52_283_392, 266_752)
    assert (sep.depthwise.macs, sep.pointwise.macs) == (903_168, 51_380_224)


def test_grouped_transposed_trap():
    # 64 -> 32, k4, stride 2, groups 4 on 28x28: weight (64, 32/4, 4, 4) = 8,192 weights;
    # each of the 64*28*28 input elements is scattered through 8*16 taps: 64*8*16*784 = 6,422,528 MACs.
    # Output (28-1)*2 + (4-1) + 1 = 58 with padding 0; with padding 1: 56.
    t = conv(64, 32, 4, 28, stride=2, groups=4, transposed=True)
    assert t.macs == 6_422_528
    assert t.weights == 8_192
    assert t.output_shape == (1, 32, 58, 58)
    assert conv(64, 32, 4, 28, stride=2, padding=1, groups=4, transposed=True).output_shape == (1, 32, 56, 56)
    # MACs do not depend on the output crop: the scatter happens before it.
    assert conv(64, 32, 4, 28, stride=2, padding=1, groups=4, transposed=True).macs == 6_422_528


def test_depth_multiplier():
    # Keras DepthwiseConv2D(3, depth_multiplier=2) on 32x32x16: weight (32, 1, 3, 3) = 288 weights,
    # MACs 288 * 32*32 = 294,912.
    dw = depthwise(16, 3, 32, depth_multiplier=2, padding="same")
    assert dw.output_shape == (1, 32, 32, 32)
    assert (dw.weights, dw.macs) == (288, 294_912)
    # SeparableConv2D(64, 3, depth_multiplier=2): depthwise as above + pointwise 32 -> 64: 2,048 weights,
    # 2,048 * 1,024 = 2,097,152 MACs.
    sep = separable_of(conv(16, 64, 3, 32, padding="same"), depth_multiplier=2)
    assert sep is not None
    assert sep.weights == 288 + 2_048
    assert sep.macs == 294_912 + 2_097_152


def test_dilation_with_same():
    # k3, dilation 2 -> extent 5; 'same' at stride 1 pads 4 = (2, 2); output stays 17.
    assert F.same_padding(17, 3, 1, 2) == (2, 2)
    layer = conv(8, 8, 3, 17, dilation=2, padding="same")
    assert layer.output_shape == (1, 8, 17, 17)
    assert layer.macs == 8 * 8 * 9 * 17 * 17  # = 166,464


def test_stride2_same_on_odd_sizes():
    # TF: out = ceil(7 / 2) = 4; total pad = (4-1)*2 + 3 - 7 = 2 -> (1, 1).
    assert F.same_padding(7, 3, 2, 1) == (1, 1)
    # out = ceil(8/2) = 4; total = 3*2 + 3 - 8 = 1 -> (0, 1): the odd pixel goes after (TF convention).
    assert F.same_padding(8, 3, 2, 1) == (0, 1)
    # out = ceil(9/2) = 5; total = 4*2 + 1 - 9 = 0 for a 1x1 kernel.
    assert F.same_padding(9, 1, 2, 1) == (0, 0)
    assert conv(3, 32, 3, (225, 224), stride=2, padding="same").output_shape == (1, 32, 113, 112)


def test_output_length_matches_pytorch_docs_formula():
    # floor((in + 2p - d(k-1) - 1)/s) + 1 with in 32, p 1, d 1, k 3, s 2: floor(31/2) + 1 = 16
    assert F.conv_output_length(32, 3, 2, 1, 1, 1) == 16
    # transposed: (in-1)s - 2p + d(k-1) + op + 1 = 15*2 - 2 + 2 + 1 + 1 = 32
    assert F.transposed_output_length(16, 3, 2, 1, 1, 1, 1) == 32


def test_pointwise_and_linear():
    # 1x1, 96 -> 24 on 56x56: 96*24 = 2,304 weights; 2,304 * 3,136 = 7,225,344 MACs
    pw = pointwise(96, 24, 56)
    assert pw.kind == "pointwise" and (pw.weights, pw.macs) == (2_304, 7_225_344)
    # Linear 1024 -> 1000 with bias, batch 8: 1,024,000 weights + 1,000 bias; 8,192,000 MACs
    fc = linear(1024, 1000, batch=8)
    assert (fc.weights, fc.bias, fc.params, fc.macs) == (1_024_000, 1_000, 1_025_000, 8_192_000)


def test_1d_and_3d():
    # Conv1d 16 -> 32, k5, on 100 'valid': out 96; 32*16*5 = 2,560 weights; 2,560*96 = 245,760 MACs
    c1 = conv(16, 32, 5, 100, padding="valid", dims=1)
    assert c1.output_shape == (1, 32, 96) and c1.macs == 245_760
    # Conv3d 3 -> 8, k3, on 8x16x16 same, batch 2: 8*3*27 = 648 weights; 648 * 2048 * 2 = 2,654,208 MACs
    c3 = conv(3, 8, 3, (8, 16, 16), padding="same", batch=2)
    assert c3.output_shape == (2, 8, 8, 16, 16) and c3.macs == 2_654_208


def test_flops_are_twice_macs_and_bias_is_not_a_mac():
    a, b = conv(32, 64, 3, 28, bias=False), conv(32, 64, 3, 28, bias=True)
    assert a.macs == b.macs and b.flops == 2 * b.macs
    assert b.params == a.params + 64


@pytest.mark.parametrize("n,k", [(128, 3), (512, 3), (32, 5), (64, 7)])
def test_separable_ratio_closed_form_is_exact(n, k):
    std = conv(64, n, k, 28, padding="same")
    sep = separable_of(std)
    assert sep is not None
    assert sep.macs_ratio == Fraction(1, n) + Fraction(1, k * k) == sep.closed_form
    assert sep.params_ratio == sep.closed_form  # no bias: weights follow the same ratio
    assert sep.macs == sep.depthwise.macs + sep.pointwise.macs
    assert sep.params == sep.depthwise.params + sep.pointwise.params


def test_grouped_closed_form():
    # grouped 3x3, g=4, 64 -> 128: ratio g * (1/N + 1/9) = 4 * (1/128 + 1/9)
    g = conv(64, 128, 3, 28, groups=4, padding="same")
    sep = separable_of(g)
    assert g.kind == "grouped" and sep is not None
    assert sep.macs_ratio == 4 * (Fraction(1, 128) + Fraction(1, 9)) == sep.closed_form


def test_no_counterpart_for_pointwise_depthwise_transposed_linear():
    assert separable_of(pointwise(8, 16, 8)) is None
    assert separable_of(depthwise(8, 3, 8)) is None
    assert separable_of(conv(8, 16, 3, 8, transposed=True)) is None
    assert separable_of(linear(8, 16)) is None


def test_counts_stay_exact_integers_at_any_size():
    # 3x3x8192x8192 on 4096x4096, batch 64: far past 2**53, where a float would round.
    big = conv(8192, 8192, 3, 4096, padding="same", batch=64)
    expected = 64 * 8192 * 8192 * 9 * 4096 * 4096
    assert big.macs == expected and isinstance(big.macs, int)
    assert expected > 2**53 and float(expected) != expected + 1


def test_bytes_and_intensity():
    # 3x3 64 -> 128 on 56x56 float16, no bias: input 64*3136 + output 128*3136 + weights 73,728 elements
    layer = conv(64, 128, 3, 56, padding="same", dtype="float16")
    elements = 64 * 3136 + 128 * 3136 + 73_728
    assert layer.bytes == 2 * elements
    assert layer.intensity == pytest.approx(2 * layer.macs / (2 * elements))

"""Declared networks against independent figures: the papers, Keras' published counts, torchvision's
metadata, and torch reference models counted with FlopCounterMode and sum(p.numel())."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_in_process
from reference_models import cifar, mobilenet_v1, xception
from torch_oracles import n_params, torch_macs

from dscalc.cost import network as N
from dscalc.cost.totals import by_kind, totals


def dscalc_totals(name, **kw):
    return totals(N.build(N.load(name), **kw))


def bn_buffers(model: torch.nn.Module) -> int:
    """BatchNorm running mean + variance (what Keras counts as non-trainable), not num_batches_tracked."""
    return sum(m.running_mean.numel() + m.running_var.numel()
               for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def check_against_torch(name: str, model: torch.nn.Module, resolution: int, **kw) -> dict[str, int]:
    tot = dscalc_totals(name, resolution=resolution, **kw)
    macs, out = torch_macs(model.eval(), torch.zeros(1, 3, resolution, resolution))
    assert tot["macs"] == macs
    assert tot["params"] == n_params(model)
    assert tot["buffers"] == bn_buffers(model)
    return tot


# ------------------------------------------------------------------------------------------ MobileNet-V1

def test_mobilenet_v1_paper_figures():
    # MobileNets paper (Howard et al. 2017), section 4 / Table 6 and the exact integers
    tot = dscalc_totals("mobilenet_v1")
    assert tot["macs"] == 568_740_352
    assert tot["weights"] == 4_209_088
    # Keras model.summary() of MobileNet(alpha=1.0): Total 4,253,864 = trainable 4,231,976 + non-trainable 21,888
    assert (tot["params"], tot["buffers"]) == (4_231_976, 21_888)
    assert tot["params"] + tot["buffers"] == 4_253_864


@pytest.mark.parametrize("alpha,macs", [(0.75, 325_400_448), (0.5, 149_497_088), (0.25, 41_030_272)])
def test_mobilenet_v1_width_multiplier(alpha, macs):
    assert dscalc_totals("mobilenet_v1", alpha=alpha)["macs"] == macs
    check_against_torch("mobilenet_v1", mobilenet_v1(alpha), 224, alpha=alpha)


# Paper Table 7 (1.0 MobileNet at 224/192/160/128): 569M, 418M, 290M, 186M mult-adds, 4.2M params, rounded;
# the exact integers come from the torch reference model counted by FlopCounterMode.
@pytest.mark.parametrize("resolution,paper_millions", [(224, 569), (192, 418), (160, 290), (128, 186)])
def test_mobilenet_v1_resolution_table(resolution, paper_millions):
    tot = check_against_torch("mobilenet_v1", mobilenet_v1(), resolution)
    # the paper neither rounds nor truncates consistently (568.74M -> 569, 290.68M -> 290): within 1M
    assert abs(tot["macs"] / 1e6 - paper_millions) < 1
    assert round(tot["weights"] / 1e6, 1) == 4.2


def test_mobilenet_v1_table2_shares():
    # Table 2: mult-adds 94.86% (1x1), 3.06% (DW), 0.18% (FC); parameters 74.59%, 1.06%, 0.02%, 24.33%.
    # The paper prints 1.19% for Conv 3x3 mult-adds; its four shares then sum to 99.29%. 10,838,016 / 568,740,352
    # (the first layer: 3*3*3*32*112*112) is 1.91%, and with it the shares sum to 100.01% as rounding allows.
    kinds = by_kind(N.build(N.load("mobilenet_v1")))
    macs = sum(v["macs"] for v in kinds.values())
    weights = sum(v["weights"] for v in kinds.values())

    def pct(kind, key, whole):
        return round(100 * kinds[kind][key] / whole, 2)

    assert [pct(k, "macs", macs) for k in ("pointwise", "depthwise", "linear")] == [94.86, 3.06, 0.18]
    assert kinds["standard"]["macs"] == 3 * 3 * 3 * 32 * 112 * 112
    assert [pct(k, "weights", weights) for k in ("pointwise", "depthwise", "standard", "linear")] == \
        [74.59, 1.06, 0.02, 24.33]


def test_conv_mobilenet_as_standard():
    # Paper Table 4: Conv MobileNet 4866M mult-adds, 29.3M parameters (rounded). The exact count comes from
    # the torch reference with full 3x3 convs; the paper's 4866M is that figure without the FC layer's 1.024M.
    tot = check_against_torch("mobilenet_v1", mobilenet_v1(conv_mobilenet=True), 224, as_="standard")
    assert round(tot["weights"] / 1e6, 1) == 29.3
    assert round((tot["macs"] - 1024 * 1000) / 1e6) == 4866


# --------------------------------------------------------------------------------- other built-ins

def test_mobilenet_v2_torchvision():
    tv = pytest.importorskip("torchvision")
    meta = tv.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta
    tot = check_against_torch("mobilenet_v2", tv.models.mobilenet_v2(), 224)
    assert tot["macs"] == 300_774_272 and round(tot["macs"] / 1e9, 3) == meta["_ops"]
    assert tot["params"] == 3_504_872 == meta["num_params"]


@pytest.mark.parametrize("alpha", [0.5, 0.75, 1.4])
def test_mobilenet_v2_width_multiplier(alpha):
    tv = pytest.importorskip("torchvision")
    check_against_torch("mobilenet_v2", tv.models.mobilenet_v2(width_mult=alpha), 224, alpha=alpha)


@pytest.mark.parametrize("resolution", [160, 192])
def test_mobilenet_v2_resolution(resolution):
    tv = pytest.importorskip("torchvision")
    check_against_torch("mobilenet_v2", tv.models.mobilenet_v2(), resolution)


def test_xception_keras():
    # Keras Xception model.summary(): Total params 22,910,480; trainable 22,855,952; non-trainable 54,528.
    tot = check_against_torch("xception", xception(), 299)
    assert (tot["params"], tot["buffers"]) == (22_855_952, 54_528)


@pytest.mark.parametrize("name,x_kind", [("cifar_conv", "conv"), ("cifar_depthwise", "depthwise"),
                                         ("cifar_separable", "separable")])
def test_cifar_networks(name, x_kind):
    check_against_torch(name, cifar(x_kind), 32)


def test_cifar_conv_by_hand():
    # module C: Conv2D(C,1): cin*C + C; X = Conv2D(C,3): 9*C*C + C (twice); 3 BN of 2C params + 2C buffers.
    # params: m1 (3*64+64) + 2*(9*64*64+64) + 3*128 = 256 + 73,856 + 384 = 74,496
    #         m2 (64*128+128) + 2*(9*128*128+128) + 3*256 = 8,320 + 295,168 + 768 = 304,256
    #         m3 (128*256+256) + 2*(9*256*256+256) + 3*512 = 33,024 + 1,180,160 + 1,536 = 1,214,720
    #         dense 256*10 + 10 = 2,570                      total 1,596,042
    # MACs:   m1 32*32*(3*64 + 2*9*64*64) = 1024*73,920 = 75,694,080
    #         m2 16*16*(64*128 + 2*9*128*128) = 256*303,104 = 77,594,624
    #         m3 8*8*(128*256 + 2*9*256*256) = 64*1,212,416 = 77,594,624;  dense 2,560   total 230,885,888
    tot = dscalc_totals("cifar_conv")
    assert tot["params"] == 1_596_042
    assert tot["macs"] == 75_694_080 + 77_594_624 + 77_594_624 + 2_560 == 230_885_888


# ------------------------------------------------------------------------------------------ user specs

USER_SPEC = """\
name: tiny
input: [3, 32, 32]
defaults: {bias: false}
layers:
  - conv: {filters: 16, k: 3, stride: 2}
  - bn
  - relu
  - separable: {filters: 32, k: 3}
  - add:
    - [pointwise: {filters: 32}, bn]
    - []
  - gap
  - dense: {units: 10}
"""


def test_user_spec_worked_by_hand(tmp_path):
    # conv 3->16 k3 s2 same on 32x32 -> 16x16: 3*16*9 = 432 weights, 432*256 = 110,592 MACs
    # bn 16: 32 params + 32 buffers
    # separable: dw 16 k3: 144 weights, 144*256 = 36,864 MACs; pw 16->32: 512 weights, 131,072 MACs
    # add: pw 32->32: 1,024 weights, 262,144 MACs; bn 32: 64 params + 64 buffers; identity shortcut
    # dense 32->10: 320 weights, 320 MACs; no bias, since the spec's defaults turn bias off everywhere
    path = tmp_path / "tiny.yaml"
    path.write_text(USER_SPEC)
    tot = totals(N.build(N.load(str(path))))
    assert tot["macs"] == 110_592 + 36_864 + 131_072 + 262_144 + 320 == 540_992
    assert tot["weights"] == 432 + 144 + 512 + 1_024 + 320 == 2_432
    assert tot["params"] == 2_432 + 32 + 64 == 2_528
    assert tot["buffers"] == 96


def test_readme_spec_is_the_tested_one():
    from pathlib import Path
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert USER_SPEC in readme


# ------------------------------------------------------------------------------------------- the CLI

dscalc = run_in_process  # conftest: `dscalc ARGS` through dscalc.cli.main


def test_network_json_schema():
    r = dscalc("network", "mobilenet_v1", "--alpha", "0.5", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["macs"] == 149_497_088
    assert {"params", "weights", "buffers", "macs", "flops"} <= data["totals"].keys()
    assert {"name", "kind", "params", "macs", "flops"} <= data["rows"][0].keys()
    assert set(data["by_kind"]) >= {"pointwise", "depthwise", "standard", "linear"}
    assert data["by_kind"]["linear"]["weights"] == 512 * 1000


def test_network_list_and_table():
    listing = dscalc("network", "--list").stdout
    for name in ("mobilenet_v1", "mobilenet_v2", "xception", "cifar_conv", "cifar_depthwise", "cifar_separable"):
        assert name in listing
    table = dscalc("network", "mobilenet_v1").stdout
    assert "568,740,352" in table and "94.86%" in table and "4,209,088" in table


BAD_SPECS = [
    ("layers: [conv: {filters: 8, k: 3}\n", "malformed YAML"),
    ("input: [3, 8, 8]\nlayers:\n  - convolution: {filters: 8}\n", "layer 1: unknown layer type 'convolution'"),
    ("input: [3, 8, 8]\nlayers:\n  - add:\n    - [pointwise: {filters: 8}]\n    - []\n",
     "residual add of mismatched shapes 8x8x8 vs 3x8x8"),
    ("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3, kernel: 3}\n", "conv has no option(s) kernel"),
    ("input: [3, 8]\nlayers: []\n", "'layers' must be a non-empty list"),
    ("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 9, padding: valid}\n",
     "layer 1 (top): conv: k kernel 9 is larger than the padded input 8"),
]


@pytest.mark.parametrize("text,message", BAD_SPECS)
def test_bad_specs(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = dscalc("network", str(path))
    assert r.returncode == 2, r.stdout
    assert message in r.stderr and str(path) in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,message", [
    (["network", "mobilenet_v1", "--alpha", "-0.5"], "--alpha: must be a positive number, got -0.5"),
    (["network", "no/such/file.yaml"], "NETWORK: no such spec file: no/such/file.yaml"),
    (["network", "resnet_9000"], "NETWORK: unknown built-in network 'resnet_9000'; known: cifar_conv"),
])
def test_bad_network_arguments(args, message):
    r = dscalc(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_as_separable_turns_standard_convs_into_pairs():
    # cifar_conv --as separable: every 3x3 conv C->C becomes dw (9C weights, +0 bias) + pw (C*C, + C bias)
    rows = N.build(N.load("cifar_conv"), as_="separable")
    kinds = [r.kind for r in rows if r.kind in ("standard", "depthwise", "pointwise")]
    assert "standard" not in kinds and kinds.count("depthwise") == 6
    sep = totals(N.build(N.load("cifar_separable")))
    assert totals(rows)["macs"] == sep["macs"] == 31_623_680  # the Keras SeparableConv2D network, exactly
    # (by hand in tests/test_measure.py::test_compare_network_and_model; cifar_separable vs torch above)
    assert totals(rows)["params"] == sep["params"]




def test_concat_and_transposed_by_hand(tmp_path):
    # concat of pw 8->4 (8*4*256 = 8,192 MACs) and 3x3 8->6 same (9*8*6*256 = 110,592) on 16x16: 10 channels;
    # transposed 10->5, k2, s2 on 16x16: 10*5*4*256 = 51,200 MACs (scattered from the input), output 32x32.
    # weights 32 + 432 + 200 = 664.
    path = tmp_path / "cat.yaml"
    path.write_text("input: [8, 16, 16]\ndefaults: {bias: false}\nlayers:\n  - concat:\n"
                    "    - [pointwise: {filters: 4}]\n    - [conv: {filters: 6, k: 3}]\n"
                    "  - transposed: {filters: 5, k: 2, stride: 2, padding: 0}\n")
    rows = N.build(N.load(str(path)))
    tot = totals(rows)
    assert tot["macs"] == 8_192 + 110_592 + 51_200 and tot["weights"] == 664
    assert rows[-1].output_shape == (1, 5, 32, 32)
    bad = tmp_path / "badcat.yaml"
    bad.write_text("input: [8, 16, 16]\nlayers:\n  - concat:\n    - [pointwise: {filters: 4}]\n"
                   "    - [conv: {filters: 6, k: 3, stride: 2}]\n")
    r = dscalc("network", str(bad))
    assert r.returncode == 2 and "concat of branches with different spatial sizes" in r.stderr

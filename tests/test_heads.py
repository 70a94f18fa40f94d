"""Issue 30: VGG16 as a built-in network, and its fully connected head rewritten (`--as pointwise-head | gap-head`)
against torch models built here and counted by FlopCounterMode / 2 and sum(p.numel()) - never dscalc."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch_oracles import n_params, torch_macs

from dscalc.cost import network as N
from dscalc.cost.totals import totals

torchvision = pytest.importorskip("torchvision")


def vgg16(head: str | None = None) -> nn.Module:
    """torchvision's vgg16 (on meta: no weights allocated), its classifier optionally replaced by the issue's
    two heads of the same widths: 1x1 convs on the 7x7 map then global average pooling, or global average pooling
    then the same Linear layers."""
    with torch.device("meta"):
        model = torchvision.models.vgg16()
        if head == "pointwise-head":
            model.avgpool = nn.Identity()  # (AdaptiveAvgPool2d(7) is the identity at 224)
            model.classifier = nn.Sequential(
                nn.Conv2d(512, 4096, 1), nn.ReLU(True), nn.Dropout(), nn.Conv2d(4096, 4096, 1), nn.ReLU(True),
                nn.Dropout(), nn.Conv2d(4096, 1000, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            model.forward = lambda x: model.classifier(model.features(x))  # type: ignore[method-assign]
        elif head == "gap-head":
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = nn.Sequential(
                nn.Linear(512, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
                nn.Dropout(), nn.Linear(4096, 1000))
    return model.eval()


def oracle(head: str | None) -> tuple[int, int, tuple[int, ...]]:
    model = vgg16(head)
    macs, out = torch_macs(model, torch.zeros(1, 3, 224, 224, device="meta"))
    return n_params(model), macs, out


# the issue's figures: torchvision vgg16; the heads: 49 x (512·4096 + 4096·4096 + 4096·1000) = 1,125,548,032
# head MACs for pointwise-head, and 512·4096 + 4096·4096 + 4096·1000 = 22,970,368 for gap-head
ISSUE = {None: (138_357_544, 15_470_264_320), "pointwise-head": (37_694_248, 16_472_178_688),
         "gap-head": (37_694_248, 15_369_601_024)}


@pytest.mark.parametrize("head", [None, "pointwise-head", "gap-head"])
def test_vgg16_and_its_heads_equal_torch(head):
    params, macs, out = oracle(head)
    assert (params, macs) == ISSUE[head]  # the torch models are the ones the issue counted
    assert out == (1, 1000)
    tot = totals(N.build(N.load("vgg16"), as_=head))
    assert (tot["params"], tot["macs"]) == (params, macs)


def test_head_macs_by_hand():
    conv_macs = ISSUE[None][1] - 123_633_664  # VGG16's 13 convs (the issue: head 123,633,664 MACs)
    assert ISSUE["pointwise-head"][1] - conv_macs == 49 * (512 * 4096 + 4096 * 4096 + 4096 * 1000)
    assert ISSUE["gap-head"][1] - conv_macs == 512 * 4096 + 4096 * 4096 + 4096 * 1000


def test_network_vgg16_prints_the_figures(cli):
    r = cli("network", "vgg16", columns=160)
    assert r.code == 0, r.stderr
    assert "138,357,544" in r.stdout and "15,470,264,320" in r.stdout


@pytest.mark.parametrize("head", ["pointwise-head", "gap-head"])
def test_compare_vgg16_heads(cli, head):
    r = cli("compare", "vgg16", "--as", head, "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["original"]["params"], data["original"]["macs"]) == ISSUE[None]
    assert (data["variant"]["params"], data["variant"]["macs"]) == ISSUE[head]
    assert data["as"] == head
    changed = data["changed"]
    assert "flatten1 (flatten) removed" in changed and "gap1 (gap) added" in changed
    if head == "gap-head":  # only the first dense changes: 25088 -> 512 inputs
        assert [c.split(":")[0] for c in changed if ":" in c] == ["fc1"]
        assert f"MACs {25088 * 4096:,} -> {512 * 4096:,}" in changed[1]
    else:  # every dense becomes a 1x1 conv on the 7x7 map
        assert [c.split(":")[0] for c in changed if ":" in c] == ["fc1", "fc2", "predictions"]
        assert f"MACs {4096 * 4096:,} -> {49 * 4096 * 4096:,}" in changed[2]
    # activation bytes (float32, every output once): the pointwise head's fc1, relu1, dropout1, fc2, relu2, dropout2
    # outputs are 7x7 maps of 4096 channels instead of 4096-vectors, predictions 49·1000 instead of 1000; both
    # heads lose the flatten's 25088-vector; the gap's output is 1000 (after the convs) or 512 (before the denses)
    a, b = data["activation_bytes"]
    if head == "pointwise-head":
        assert b - a == 4 * (6 * 48 * 4096 + 48 * 1000 - 25088 + 1000)
    else:
        assert b - a == 4 * (512 - 25088)
    r = cli("compare", "vgg16", "--as", head, columns=200)
    assert r.code == 0 and "changed: fc1" in r.stdout


@pytest.mark.parametrize("target", ["mobilenet_v1", "cifar_conv"])
def test_no_fully_connected_head_is_one_line(cli, target):
    r = cli("compare", target, "--as", "gap-head")
    assert r.code == 2
    assert r.stderr.strip().count("\n") == 0 and "no fully connected head" in r.stderr
    assert r.stderr.startswith("dscalc: error:")

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


# --------------------------------------------------------------------------------------------- PyTorch models

@pytest.mark.parametrize("head", ["pointwise-head", "gap-head"])
def test_compare_torchvision_vgg16_heads(cli, head):
    r = cli("compare", "torchvision:vgg16", "--as", head, "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["original"]["params"], data["original"]["macs"]) == oracle(None)[:2]
    assert (data["variant"]["params"], data["variant"]["macs"]) == oracle(head)[:2]
    assert data["as"] == head
    assert data["replaced"] == (3 if head == "pointwise-head" else 1)  # vgg16's classifier: 3 Linears
    assert data["changed"][0].startswith("classifier.0")


class FlattenHead(nn.Module):
    """A small CNN with an nn.Flatten -> Linear -> ReLU -> Linear head on a 16x5x5 map, and its two rewrites."""

    def __init__(self, head: str | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU())  # 7x7 -> 5x5
        if head is None:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 25, 32), nn.ReLU(), nn.Linear(32, 10))
        elif head == "pointwise-head":
            self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU(), nn.Conv2d(32, 10, 1), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32), nn.ReLU(),
                                      nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("head", ["pointwise-head", "gap-head"])
def test_head_copy_of_a_flatten_module(head):
    from dscalc.trace.convert import head_copy

    model = FlattenHead()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone, found = head_copy(model, [(2, 3, 7, 7)], head)
    assert found.stacks == ((("head.1", "head.3"), (16, 5, 5)),)
    x = torch.zeros(2, 3, 7, 7)
    twin = FlattenHead(head)
    assert n_params(clone) == n_params(twin)
    macs, out = torch_macs(clone, x)
    assert (macs, out) == torch_macs(twin, x) and out == (2, 10)
    # by hand: conv 2·25·16·3·9; pointwise head 2·25·(16·32 + 32·10); gap head 2·(16·32 + 32·10)
    head_macs = 2 * 25 * (16 * 32 + 32 * 10) if head == "pointwise-head" else 2 * (16 * 32 + 32 * 10)
    assert macs == 2 * 25 * 16 * 3 * 9 + head_macs
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    assert isinstance(model.head[1], nn.Linear)


class PerPixel(nn.Module):
    """Keras' `Dense(256)` on a (7, 7, 512) map, in torch: a Linear on the channels-last map - per pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(512, 256)

    def forward(self, x):  # x: (B, 7, 7, 512)
        return self.dense(x)


def test_per_pixel_linear_is_already_a_pointwise_conv():
    from dscalc.trace.convert import find_heads

    x = torch.zeros(1, 7, 7, 512)
    found = find_heads(PerPixel(), [(1, 7, 7, 512)])
    assert found.stacks == () and found.per_pixel == ("dense",)
    # and it costs exactly its 1x1-conv twin (by hand: 49·512·256 MACs, 512·256 + 256 params)
    conv = nn.Conv2d(512, 256, 1)
    assert torch_macs(PerPixel(), x)[0] == torch_macs(conv, x.permute(0, 3, 1, 2))[0] == 49 * 512 * 256
    assert n_params(PerPixel()) == n_params(conv) == 512 * 256 + 256


def test_model_without_a_head_is_one_line(cli, tmp_path):
    path = tmp_path / "perpixel.py"
    path.write_text("from torch import nn\n\n\nclass Model(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.dense = nn.Linear(512, 256)\n\n"
                    "    def forward(self, x):\n        return self.dense(x)\n")
    r = cli("compare", f"{path}:Model", "--input", "1x7x7x512", "--as", "pointwise-head")
    assert r.code == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dscalc: error: --as:")
    assert "already a pointwise convolution, same cost" in r.stderr
    r = cli("compare", "torchvision:resnet18", "--as", "pointwise-head")  # avgpool to 1x1, flatten, fc
    assert r.code == 2 and "fc already follow(s) a global pool" in r.stderr and r.stderr.count("\n") == 1
    r = cli("compare", "torchvision:mobilenet_v2", "--as", "gap-head")
    assert r.code == 2 and "no fully connected head" in r.stderr and r.stderr.count("\n") == 1


def test_api_and_schema(cli):
    import jsonschema
    from test_schema import SCHEMA

    import dscalc

    study = dscalc.compare("vgg16", as_="gap-head")
    data = study.to_dict()
    assert (data["variant"]["params"], data["variant"]["macs"]) == ISSUE["gap-head"]
    assert data == json.loads(cli("compare", "vgg16", "--as", "gap-head", "-f", "json").stdout)
    jsonschema.validate(data, SCHEMA)
    jsonschema.validate(json.loads(cli("compare", "torchvision:vgg16", "--as", "pointwise-head", "-f", "json").stdout),
                        SCHEMA)


# ---------------------------------------------------------------------------------------- layer: linear vs 1x1

def test_layer_linear_per_pixel_equals_pointwise(cli):
    """A Linear applied per pixel of a 7x7x512 map is a Linear on 49 rows (torch flattens the leading dims): the
    same cost as the 1x1 conv 512 -> 256 on 7x7. Flattened first, it is a Linear 25088 -> 256: the same MACs but
    49x the weights. By hand: 49·512·256 = 6,422,528 MACs; 512·256 = 131,072 weights; 25088·256 = 6,422,528."""
    def counts(*args):
        r = cli("layer", *args, "--cin", "512", "--cout", "256", "-f", "json")
        assert r.code == 0, r.stderr
        row = json.loads(r.stdout)["rows"][0]
        return row["params"], row["macs"]

    per_pixel = counts("--kind", "linear", "--batch", "49")
    pointwise = counts("--kind", "pointwise", "--size", "7")
    assert per_pixel == pointwise == (512 * 256, 49 * 512 * 256)
    r = cli("layer", "--kind", "linear", "--cin", "25088", "--cout", "256", "-f", "json")
    row = json.loads(r.stdout)["rows"][0]
    assert (row["params"], row["macs"]) == (7 * 7 * 512 * 256, 49 * 512 * 256)
    # and torch agrees: nn.Linear on the channels-last map vs nn.Conv2d 1x1 on the channels-first one
    x = torch.zeros(1, 7, 7, 512)
    assert torch_macs(nn.Linear(512, 256), x)[0] == torch_macs(nn.Conv2d(512, 256, 1), x.permute(0, 3, 1, 2))[0] \
        == 49 * 512 * 256


# ------------------------------------------------------------------------------------------------ Keras edit

def test_keras_dense_on_a_map_is_its_1x1_conv_twin(cli, tmp_path):
    """The articles' edit `Dense(256)` -> `Conv2D(256, (1, 1))` on a (7, 7, 512) map changes nothing: the same
    params (Keras' count_params(): 512·256 + 256) and MACs (by hand: 49·512·256)."""
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    from dscalc.trace.keras import import_keras

    keras = import_keras()
    twins = {"dense": keras.layers.Dense(256), "conv": keras.layers.Conv2D(256, (1, 1))}
    counts = {}
    for name, layer in twins.items():
        inputs = keras.Input((7, 7, 512))
        model = keras.Model(inputs, layer(inputs))
        assert model.count_params() == 512 * 256 + 256
        path = tmp_path / f"{name}.keras"
        model.save(path)
        r = cli("profile", str(path), "-f", "json")
        assert r.code == 0, r.stderr
        tot = json.loads(r.stdout)["totals"]
        counts[name] = (tot["params"], tot["macs"])
    assert counts["dense"] == counts["conv"] == (model.count_params(), 49 * 512 * 256)


def test_network_as_head(cli):
    r = cli("network", "vgg16", "--as", "pointwise-head", "-f", "json")
    assert r.code == 0, r.stderr
    tot = json.loads(r.stdout)["totals"]
    assert (tot["params"], tot["macs"]) == oracle("pointwise-head")[:2]


def test_a_model_the_meta_device_cannot_run_is_one_line(cli, tmp_path):
    path = tmp_path / "valued.py"
    path.write_text("from torch import nn\n\n\nclass Model(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n"
                    "    def forward(self, x):\n        return self.fc(x) if x.sum() > 0 else x\n")
    r = cli("compare", f"{path}:Model", "--input", "1x4", "--as", "gap-head")
    assert r.code == 1 and r.stderr.count("\n") == 1 and "meta device" in r.stderr

"""Issue 30 on graph files: `compare MODEL.keras|.h5|.onnx --as pointwise-head | gap-head` rewrites the Flatten ->
Dense/Gemm head in the graph and counts both sides with the format's own profiler. The oracles: Keras'
count_params() of twin models built here, closed forms worked in the comments, and for ONNX the torch twins'
FlopCounterMode / 2 and sum(p.numel()) - never dscalc. And `layer --kind linear --size` (a Dense per pixel) against
`--kind pointwise` and torch."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings

import pytest
import torch
from torch import nn
from torch_oracles import n_params, torch_macs

HEADS = ["pointwise-head", "gap-head"]


def _keras():
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    from dscalc.trace.keras import import_keras

    return import_keras()


def _compare(cli, path, head, *extra):
    r = cli("compare", str(path), "--as", head, *extra, "-f", "json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


# ----------------------------------------------------------------------------------------------------- Keras

def _vgg_like(keras, head=None):
    """A small VGG: 16x16x3 -> conv 16 -> pool -> conv 32 -> pool -> a 4x4x32 map, then the head: Flatten -> Dense
    64 (relu) -> Dropout -> Dense 48 (relu) -> Dense 10; or its two twins of the same widths."""
    L = keras.layers
    x = inputs = keras.Input((16, 16, 3))
    x = L.MaxPooling2D(2)(L.Conv2D(16, 3, padding="same", activation="relu")(x))
    x = L.MaxPooling2D(2)(L.Conv2D(32, 3, padding="same", activation="relu")(x))
    if head is None:
        x = L.Flatten()(x)
        x = L.Dense(10)(L.Dense(48, activation="relu")(L.Dropout(0.5)(L.Dense(64, activation="relu")(x))))
    elif head == "pointwise-head":
        x = L.Conv2D(48, 1, activation="relu")(L.Dropout(0.5)(L.Conv2D(64, 1, activation="relu")(x)))
        x = L.GlobalAveragePooling2D()(L.Conv2D(10, 1)(x))
    else:
        x = L.GlobalAveragePooling2D()(x)
        x = L.Dense(10)(L.Dense(48, activation="relu")(L.Dropout(0.5)(L.Dense(64, activation="relu")(x))))
    return keras.Model(inputs, x)


# MACs by hand: conv1 16·16·3·16·9 = 110,592; conv2 8·8·16·32·9 = 294,912; together 405,504.
# head: Flatten -> 512·64 + 64·48 + 48·10 = 36,320; as 1x1 convs on the 4x4 map: 16·(32·64 + 64·48 + 48·10) = 89,600;
# after a global pool: 32·64 + 64·48 + 48·10 = 5,600.
VGG_LIKE_MACS = {None: 405_504 + 36_320, "pointwise-head": 405_504 + 89_600, "gap-head": 405_504 + 5_600}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("head", HEADS)
def test_keras_vgg_like_heads_equal_their_twins(cli, tmp_path, head, suffix):
    keras = _keras()
    model = _vgg_like(keras)
    path = tmp_path / f"vgg_like{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    data = _compare(cli, path, head)
    assert (data["original"]["params"], data["original"]["macs"]) == (model.count_params(), VGG_LIKE_MACS[None])
    twin = _vgg_like(keras, head).count_params()
    assert twin == model.count_params() - (512 - 32) * 64  # only the first Dense's fan-in shrinks: 4·4·32 -> 32
    assert (data["variant"]["params"], data["variant"]["macs"]) == (twin, VGG_LIKE_MACS[head])
    assert data["as"] == head and data["replaced"] == (3 if head == "pointwise-head" else 1)
    assert len(data["changed"]) == 1 and "32x4x4 map" in data["changed"][0]
    assert all(b > 0 for b in data["activation_bytes"])


def test_keras_dense_on_a_map_is_kept_and_named(cli, tmp_path):
    """Dense(256) on a (7, 7, 512) map (per pixel: already a 1x1 conv) then Flatten -> Dense(10): only the last
    is rewritten. Twin: the same Dense(256), then Conv2D(10, 1x1) + GAP. MACs by hand: 49·512·256 = 6,422,528 per
    pixel, then 49·256·10 = 125,440 as a 1x1 conv (the original's 12,544·10 = 125,440 too)."""
    keras = _keras()
    L = keras.layers
    x = inputs = keras.Input((7, 7, 512))
    model = keras.Model(inputs, L.Dense(10)(L.Flatten()(L.Dense(256)(x))))
    twin = keras.Model(inputs, L.GlobalAveragePooling2D()(L.Conv2D(10, 1)(L.Dense(256)(x))))
    path = tmp_path / "per_pixel.keras"
    model.save(path)
    data = _compare(cli, path, "pointwise-head")
    assert (data["original"]["params"], data["original"]["macs"]) == (model.count_params(), 6_422_528 + 125_440)
    assert (data["variant"]["params"], data["variant"]["macs"]) == (twin.count_params(), 6_422_528 + 125_440)
    assert any("already a pointwise convolution" in line for line in data["changed"])


@pytest.mark.parametrize("head", HEADS)
def test_keras_head_with_batchnorm_between(cli, tmp_path, head):
    """Flatten -> Dense 32 -> BatchNormalization -> ReLU -> Dense 10 on a 6x6x8 map: the BN is rebuilt on the map
    (pointwise-head) and its 64 trainable params kept. MACs by hand: conv 36·3·8·9 = 7,776; head 288·32 + 32·10 =
    9,536; as 1x1 convs 36·(8·32 + 32·10) = 20,736; after GAP 8·32 + 32·10 = 576."""
    keras = _keras()
    L = keras.layers

    def build(twin=None):
        x = inputs = keras.Input((8, 8, 3))
        x = L.Conv2D(8, 3)(x)
        if twin == "pointwise-head":
            x = L.GlobalAveragePooling2D()(L.Conv2D(10, 1)(L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 1)(x)))))
        else:
            x = L.GlobalAveragePooling2D()(x) if twin == "gap-head" else L.Flatten()(x)
            x = L.Dense(10)(L.ReLU()(L.BatchNormalization()(L.Dense(32)(x))))
        return keras.Model(inputs, x)

    model, path = build(), tmp_path / "bn.keras"
    model.save(path)
    data = _compare(cli, path, head)
    trainable = sum(math.prod(w.shape) for w in build(head).trainable_weights)  # params: BN's moving stats aside
    assert trainable == build(head).count_params() - 64
    macs = 7_776 + (20_736 if head == "pointwise-head" else 576)
    assert (data["variant"]["params"], data["variant"]["macs"]) == (trainable, macs)
    assert data["original"]["macs"] == 7_776 + 9_536


def test_keras_without_a_head_is_one_line(cli, tmp_path):
    keras = _keras()
    inputs = keras.Input((7, 7, 512))
    path = tmp_path / "dense_only.keras"
    keras.Model(inputs, keras.layers.Dense(256)(inputs)).save(path)
    r = cli("compare", str(path), "--as", "gap-head")
    assert r.code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("dscalc: error: --as:")
    assert "already a pointwise convolution, same cost" in r.stderr


# ------------------------------------------------------------------------------------------------------ ONNX

class Tiny(nn.Module):
    """A small VGG in torch (16x16 -> a 32x4x4 map) and its head, Flatten -> Linear 64 -> ReLU -> Dropout ->
    Linear 48 -> ReLU -> Linear 10; or the two twins of the same widths."""

    def __init__(self, head: str | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        if head is None:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 48),
                                      nn.ReLU(), nn.Linear(48, 10))
        elif head == "pointwise-head":
            self.head = nn.Sequential(nn.Conv2d(32, 64, 1), nn.ReLU(), nn.Dropout(), nn.Conv2d(64, 48, 1), nn.ReLU(),
                                      nn.Conv2d(48, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(),
                                      nn.Dropout(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))

    def forward(self, x):
        return self.head(self.features(x))


class Pooled(nn.Module):
    """ResNet's head: a global pool to 1x1, flatten, one Linear - nothing to rewrite."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


def _export(model, path, dynamo=False):
    pytest.importorskip("onnx")
    if dynamo:
        pytest.importorskip("onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model.eval(), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=True, optimize=False,
                              verbose=False)
        else:
            torch.onnx.export(model.eval(), (torch.zeros(1, 3, 16, 16),), str(path), dynamo=False)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("head", HEADS)
def test_onnx_heads_equal_their_torch_twins(cli, tmp_path, head, dynamo):
    path = tmp_path / "tiny.onnx"
    _export(Tiny(), path, dynamo)
    data = _compare(cli, path, head)
    x = torch.zeros(1, 3, 16, 16)
    for side, model in (("original", Tiny()), ("variant", Tiny(head))):
        macs, out = torch_macs(model.eval(), x)
        assert out == (1, 10)
        assert (data[side]["params"], data[side]["macs"]) == (n_params(model), macs), side
    assert data["variant"]["macs"] == VGG_LIKE_MACS[head]  # the same network as the Keras one: the same closed form
    assert data["replaced"] == (3 if head == "pointwise-head" else 1)
    assert data["changed"][0].startswith("head.1")
    import jsonschema
    from test_schema import SCHEMA

    jsonschema.validate(data, SCHEMA)


def test_onnx_head_with_batchnorm_between(cli, tmp_path):
    """Flatten -> Gemm -> BatchNormalization -> Relu -> Gemm (BN kept as its own node: exported in training mode):
    the BN runs on the map's channels (axis 1) after the rewrite, as nn.BatchNorm2d does in the torch twin."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(288, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 10))
    twin = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 32, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 10, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.zeros(2, 3, 8, 8)
    path = tmp_path / "bn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, training=torch.onnx.TrainingMode.TRAINING)
    data = _compare(cli, path, "pointwise-head")
    assert (data["variant"]["params"], data["variant"]["macs"]) == (n_params(twin), torch_macs(twin.eval(), x)[0])
    assert data["replaced"] == 2


def test_onnx_without_a_head_is_one_line(cli, tmp_path):
    path = tmp_path / "pooled.onnx"
    _export(Pooled(), path)
    r = cli("compare", str(path), "--as", "pointwise-head")
    assert r.code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("dscalc: error: --as:")
    assert "no fully connected head" in r.stderr and "already follow(s) a global pool" in r.stderr


def test_graph_heads_are_counted_not_timed(cli, tmp_path):
    path = tmp_path / "tiny.onnx"
    _export(Tiny(), path)
    r = cli("compare", str(path), "--as", "gap-head", "--time")
    assert r.code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("dscalc: error: --time:")
    r = cli("compare", str(path), "--as", "separable")  # the separable copy still needs nn.Conv modules
    assert r.code == 2 and r.stderr.count("\n") == 1


# ------------------------------------------------------------------------------------ layer: linear --size

def _layer(cli, *args):
    r = cli("layer", *args, "-f", "json")
    assert r.code == 0, r.stderr
    row = json.loads(r.stdout)["rows"][0]
    return row["params"], row["macs"]


@pytest.mark.parametrize("bias", [False, True])
def test_layer_linear_on_a_map_is_a_pointwise_conv(cli, bias):
    """`--kind linear --size 7` is a Dense applied per pixel of a 7x7x512 map: by hand 512·256 weights
    (+ 256 bias) and 49·512·256 = 6,422,528 MACs, the 1x1 conv's. Flattened first (--cin 25088), the MACs are
    the same (25088·256) and the weights 49x. torch: nn.Linear on the (1, 7, 7, 512) map and on its flattened
    (1, 25088) vector, nn.Conv2d(512, 256, 1) on (1, 512, 7, 7)."""
    flag = "--bias" if bias else "--no-bias"
    per_pixel = _layer(cli, "--kind", "linear", "--cin", "512", "--cout", "256", "--size", "7", flag)
    assert _layer(cli, "--kind", "linear", "--cin", "512", "--cout", "256", "--height", "7", "--width", "7",
                  flag) == per_pixel
    pointwise = _layer(cli, "--kind", "pointwise", "--cin", "512", "--cout", "256", "--size", "7", flag)
    flattened = _layer(cli, "--kind", "linear", "--cin", "25088", "--cout", "256", flag)
    b = 256 if bias else 0
    assert per_pixel == pointwise == (512 * 256 + b, 49 * 512 * 256)
    assert flattened == (25088 * 256 + b, 25088 * 256)
    dense, conv, flat = nn.Linear(512, 256, bias=bias), nn.Conv2d(512, 256, 1, bias=bias), nn.Linear(25088, 256,
                                                                                                      bias=bias)
    x = torch.zeros(1, 7, 7, 512)
    assert per_pixel == (n_params(dense), torch_macs(dense, x)[0])
    assert pointwise == (n_params(conv), torch_macs(conv, x.permute(0, 3, 1, 2))[0])
    assert flattened == (n_params(flat), torch_macs(flat, x.flatten(1))[0])


def test_layer_linear_size_says_what_it_means(cli):
    r = cli("layer", "--kind", "linear", "--cin", "512", "--cout", "256", "--size", "7", columns=200)
    assert r.code == 0 and "applied per position of a 7x7 map" in r.stdout and "--cin 25,088" in r.stdout
    r = cli("layer", "--kind", "linear", "--cin", "512", "--cout", "256", "--k", "3")
    assert r.code == 2 and r.stderr.count("\n") == 1
    r = cli("layer", "--help", columns=200)
    assert "With --kind linear" in r.stdout

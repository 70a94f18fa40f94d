"""`dscalc profile` on Keras 3 models (a .py that builds one, .keras, .h5): the seed study's three CIFAR-10 networks
against Keras' own count_params() / trainable weights, their torch twins (tests/reference_models.cifar:
sum(p.numel()), BatchNorm buffers, FlopCounterMode) and hand arithmetic; every other layer kind against hand
arithmetic and the output shapes Keras itself infers; the errors."""

from __future__ import annotations

import importlib.util
import json
import math
import textwrap
from pathlib import Path

import pytest
from conftest import run_in_process

from dscalc.trace.keras import import_keras

if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed", allow_module_level=True)
keras = import_keras()  # on torch unless the user configured an installed backend
dscalc = run_in_process

CIFAR = textwrap.dedent("""
    import keras
    from keras import layers


    def cifar(kind="separable"):
        \"\"\"The seed study's CIFAR-10 network: three modules [Conv2D(C, 1) + BN + ReLU, then twice X + BN + ReLU],
        C = 64, 128, 256, AveragePooling2D(2) after modules 1 and 2, GlobalAveragePooling2D after module 3,
        then Dense(10) + softmax; X = Conv2D(C, 3, same), DepthwiseConv2D(3, same) or SeparableConv2D(C, 3, same).\"\"\"
        x = inputs = keras.Input((32, 32, 3))
        for m, c in enumerate((64, 128, 256)):
            x = layers.Conv2D(c, 1, name=f"m{m + 1}_expand")(x)
            x = layers.BatchNormalization(name=f"m{m + 1}_bn0")(x)
            x = layers.ReLU()(x)
            for i in (1, 2):
                if kind == "conv":
                    x = layers.Conv2D(c, 3, padding="same", name=f"m{m + 1}_x{i}")(x)
                elif kind == "depthwise":
                    x = layers.DepthwiseConv2D(3, padding="same", name=f"m{m + 1}_x{i}")(x)
                else:
                    x = layers.SeparableConv2D(c, 3, padding="same", name=f"m{m + 1}_x{i}")(x)
                x = layers.BatchNormalization(name=f"m{m + 1}_bn{i}")(x)
                x = layers.ReLU()(x)
            x = layers.AveragePooling2D(2)(x) if m < 2 else layers.GlobalAveragePooling2D()(x)
        outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
        return keras.Model(inputs, outputs, name=f"cifar_{kind}")
""")

# By hand, positions per module 32² = 1,024, 16² = 256, 8² = 64:
# separable: module 1: 1x1 3*64*1,024 = 196,608; each X dw 64*9*1,024 + pw 64*64*1,024 = 4,784,128
#            module 2: 1x1 64*128*256 = 2,097,152; each X 128*9*256 + 128*128*256 = 4,489,216
#            module 3: 1x1 128*256*64 = 2,097,152; each X 256*9*64 + 256*256*64 = 4,341,760; Dense 256*10 = 2,560
#            = 31,623,680 MACs
# trainable: 1x1 convs 256 + 8,320 + 33,024; separable X (dw + pw + bias) 4,736, 17,664, 68,096 (twice each);
#            BN gamma+beta 2*(64*3 + 128*3 + 256*3) = 2,688; Dense 2,570 = 227,850; BN moving stats 2,688
SEPARABLE_MACS = 196_608 + 2 * 4_784_128 + 2_097_152 + 2 * 4_489_216 + 2_097_152 + 2 * 4_341_760 + 2_560
SEPARABLE_PARAMS = 256 + 8_320 + 33_024 + 2 * (4_736 + 17_664 + 68_096) + 2_688 + 2_570
BN_STATS = 2 * (64 * 3 + 128 * 3 + 256 * 3)


@pytest.fixture(scope="module")
def cifar_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "cifar_keras.py"
    path.write_text(CIFAR)
    return path


def _profile(target, *args):
    r = dscalc("profile", str(target), *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _build(cifar_file, kind):
    namespace: dict = {}
    exec(compile(cifar_file.read_text(), str(cifar_file), "exec"), namespace)
    return namespace["cifar"](kind)


@pytest.mark.parametrize("kind", ["conv", "depthwise", "separable"])
def test_cifar_networks_match_keras_and_the_torch_twin(cifar_file, kind):
    torch = pytest.importorskip("torch")
    from reference_models import cifar
    from torch_oracles import torch_macs

    data = _profile(cifar_file, "-i", "1x32x32x3", "--kwargs", json.dumps({"kind": kind}))
    model = _build(cifar_file, kind)
    tot = data["totals"]
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert tot["total_params"] == model.count_params()  # Keras' own totals, exactly
    assert (tot["trainable_params"], tot["non_trainable_params"]) == (trainable, model.count_params() - trainable)
    twin = cifar(kind).eval()  # the same network written in torch
    bn_stats = sum(b.numel() for n, b in twin.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert tot["params"] == sum(p.numel() for p in twin.parameters()) and tot["buffers"] == bn_stats == BN_STATS
    assert tot["macs"] == torch_macs(twin, torch.zeros(1, 3, 32, 32))[0]
    # one row per Keras layer that holds weights, with its Keras name and class
    weighted = [layer for layer in model.layers if layer.weights]
    assert [r["name"] for r in data["rows"]] == [layer.name for layer in weighted]
    assert [r["type"] for r in data["rows"]] == [type(layer).__name__ for layer in weighted]
    assert sum(r["params"] for r in data["rows"]) == tot["params"]
    kinds = {r["name"]: r["kind"] for r in data["rows"]}
    assert kinds["m1_x1"] == {"conv": "standard", "depthwise": "depthwise", "separable": "separable"}[kind]
    assert kinds["m1_expand"] == "pointwise" and kinds["predictions"] == "linear"


def test_cifar_separable_by_hand_and_the_what_if(cifar_file):
    assert SEPARABLE_MACS == 31_623_680 and SEPARABLE_PARAMS == 227_850
    separable = _profile(cifar_file, "-i", "1x32x32x3")  # kind defaults to separable
    assert separable["totals"]["macs"] == SEPARABLE_MACS
    jsonschema = pytest.importorskip("jsonschema")  # dscalc's one JSON schema, as for a torch profile
    jsonschema.validate(separable, json.loads((Path(__file__).parents[1] / "dscalc/report/schema.json").read_text()))
    assert (separable["totals"]["params"], separable["totals"]["buffers"]) == (SEPARABLE_PARAMS, BN_STATS)
    row = next(r for r in separable["rows"] if r["name"] == "m1_x1")
    assert (row["macs"], row["params"], row["geometry"]) == (4_784_128, 4_736, "3x3")
    assert "separable" not in row  # already separable: no what-if
    # the standard network's what-if (every 3x3 Conv2D as depthwise + pointwise, bias on the pointwise part) is
    # the separable network
    standard = _profile(cifar_file, "-i", "1x32x32x3", "--kwargs", '{"kind": "conv"}')
    assert standard["totals"]["separable_macs"] == SEPARABLE_MACS
    assert next(r for r in standard["rows"] if r["name"] == "m1_x1")["separable"] == {"params": 4_736,
                                                                                       "macs": 4_784_128}


def test_keras_and_h5_files_give_the_same_profile(cifar_file, tmp_path):
    model = _build(cifar_file, "separable")
    model.save(tmp_path / "cifar.keras")
    model.save(tmp_path / "cifar.h5")
    from_py = _profile(cifar_file, "-i", "1x32x32x3")
    for path in (tmp_path / "cifar.keras", tmp_path / "cifar.h5"):
        data = _profile(path, "-i", "1x32x32x3")
        assert data["totals"] == from_py["totals"] and data["rows"] == from_py["rows"], path
        assert data["format"] == "keras"
    assert from_py["format"] == "keras_python"
    # a batch of 8 (the model's batch dimension is free): 8 x the MACs, the same params
    batched = _profile(tmp_path / "cifar.keras", "-i", "8x32x32x3")
    assert batched["totals"]["macs"] == 8 * SEPARABLE_MACS and batched["totals"]["params"] == SEPARABLE_PARAMS


KINDS = textwrap.dedent("""
    import keras
    from keras import layers


    def kinds():
        seq = keras.Input((20, 6), name="seq")
        s = layers.Conv1D(8, 3, padding="causal", dilation_rate=2, name="causal")(seq)
        s = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(s, s)
        s = layers.Dense(5, name="dense3d")(s)
        vol = keras.Input((4, 8, 8, 2), name="vol")
        v = layers.Conv3D(3, 3, strides=(1, 2, 2), padding="same", use_bias=False, name="c3d")(vol)
        img = keras.Input((8, 8, 4), name="img")
        i = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, name="dw")(img)
        i = layers.Conv2D(8, 3, groups=4, padding="same", name="grouped")(i)
        t = layers.Conv2DTranspose(6, 3, strides=2, name="up")(img)
        shared = layers.Dense(7, name="shared")
        a = shared(layers.Flatten()(t))
        b = shared(layers.Flatten()(layers.Conv2DTranspose(6, 3, strides=2, name="up2")(img)))
        frozen = layers.Dense(2, name="frozen")
        frozen.trainable = False
        return keras.Model([seq, vol, img], [s, v, i, layers.Add()([a, b]), frozen(a)])
""")


def test_every_layer_kind_by_hand(tmp_path):
    path = tmp_path / "kinds.py"
    path.write_text(KINDS)
    data = _profile(path, "-i", "1x20x6", "-i", "1x4x8x8x2", "-i", "1x8x8x4")
    rows = {r["name"]: r for r in data["rows"]}
    # causal Conv1D 6->8 k3 d2 on 20 steps: 20 outputs, 8*6*3*20 = 2,880 MACs
    # MHA, 2 heads, key_dim 4 on (1,20,8), self-attention: q, k, v projections 3 * 20*8*8 = 3,840, Q K^T and
    #   weights x V 2*20*20*(4+4) = 6,400, output projection 20*8*8 = 1,280: 11,520 MACs
    # Dense on (1,20,8) -> 5: 20*8*5 = 800
    # Conv3D 2->3 k3 stride (1,2,2) same on 4x8x8: out 4x4x4, 3*2*27*64 = 10,368
    # DepthwiseConv2D dm 2, k3, stride 2, valid on 8x8x4: out 3x3x8, 8*9*9 = 648
    # Conv2D 8->8 groups 4 k3 same on 3x3: 8*(8/4)*9*9 = 1,296
    # Conv2DTranspose 4->6 k3 s2 valid on 8x8: out 8*2 + 1 = 17, 4*6*9*64 = 13,824 (each of up, up2)
    # Dense 'shared' 17*17*6 = 1,734 -> 7, called twice: 2 * 12,138; Dense 'frozen' 7 -> 2: 14
    expected = {"causal": 2_880, "mha": 11_520, "dense3d": 800, "c3d": 10_368, "dw": 648, "grouped": 1_296,
                "up": 13_824, "up2": 13_824, "shared": 2 * 12_138, "frozen": 14}
    assert {n: rows[n]["macs"] for n in expected} == expected
    assert data["totals"]["macs"] == sum(expected.values())
    assert (rows["dw"]["kind"], rows["grouped"]["kind"], rows["up"]["kind"]) == ("depthwise", "grouped", "transposed")
    assert rows["shared"]["params"] == 1_734 * 7 + 7  # a shared layer's weights once
    assert rows["mha"]["params"] == 3 * (8 * 8 + 8) + 8 * 8 + 8  # q, k, v kernels (8, 2, 4) + biases, output
    model = _build_kinds(path)
    # the output sizes Keras infers itself (channels last) are the engine's (channels first)
    for name in ("causal", "c3d", "dw", "grouped", "up"):
        keras_shape = tuple(model.get_layer(name).output.shape)
        assert tuple(rows[name]["output_shape"]) == (1, keras_shape[-1], *keras_shape[1:-1]), name
    # Keras' convention: a frozen layer's weights are non-trainable; dscalc's params still count them
    assert data["totals"]["total_params"] == model.count_params() == data["totals"]["params"]
    assert data["totals"]["non_trainable_params"] == 7 * 2 + 2 and data["totals"]["buffers"] == 0


def _build_kinds(path):
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace["kinds"]()


SUBCLASSED = textwrap.dedent("""
    import keras


    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)
""")


def test_bad_keras_input(cifar_file, tmp_path, monkeypatch):
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    (tmp_path / "corrupt.h5").write_bytes(b"not hdf5 at all")
    import zipfile

    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as z:
        z.writestr("config.json", "{\"class_name\": \"Nope\"}")
        z.writestr("metadata.json", "{}")
    (tmp_path / "sub.py").write_text(SUBCLASSED)
    cases = [
        (["profile", str(tmp_path / "corrupt.keras"), "-i", "1x32x32x3"], 2, "is not a Keras archive"),
        (["profile", str(tmp_path / "corrupt.h5"), "-i", "1x32x32x3"], 2, "is not a Keras .h5 model"),
        (["profile", str(tmp_path / "broken.keras"), "-i", "1x32x32x3"], 2, "does not load as a Keras model"),
        (["profile", str(cifar_file), "-i", "1x3x32x32"], 2, "input 0 of the model is ?x32x32x3"),
        (["profile", str(cifar_file), "-i", "1x32x32x3", "-i", "1x4"], 2, "the model takes 1 input; got 2"),
        (["profile", f"{cifar_file}:nope", "-i", "1x32x32x3"], 2, "defines no 'nope'"),
        (["profile", str(cifar_file), "-i", "1x32x32x3", "--kwargs", '{"width": 2}'], 2, "--kwargs: cannot build"),
        (["profile", str(cifar_file), "-i", "1x32x32x3", "--time"], 2, "--time: applies to PyTorch models"),
        (["profile", str(tmp_path / "sub.py"), "-i", "1x8x8x3"], 2, "is a subclassed keras.Model"),
    ]
    for args, code, message in cases:
        r = dscalc(*args)
        assert r.returncode == code, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras" else real(name, *a))
    r = dscalc("profile", str(cifar_file), "-i", "1x32x32x3")
    assert r.returncode == 1
    assert r.stderr.strip() == "dscalc: error: dscalc profile needs keras, which is not installed: " \
                               "pip install 'dscalc[keras]'"


APPLICATIONS = textwrap.dedent("""
    from keras import applications


    def mobilenet():
        return applications.MobileNet(weights=None)


    def mobilenet_v2():
        return applications.MobileNetV2(weights=None)
""")


@pytest.mark.parametrize("name,macs,params", [
    # the MobileNets paper's 1.0/224 figure (DESIGN.md: conv + FC, bias and BN excluded)
    ("mobilenet", 568_740_352, None),
    # torchvision's published mobilenet_v2 `_ops` (0.301 G) and num_params: the same network, the same counts
    ("mobilenet_v2", 300_774_272, 3_504_872),
])
def test_keras_applications_against_published_figures(tmp_path, name, macs, params):
    path = tmp_path / "apps.py"
    path.write_text(APPLICATIONS)
    data = _profile(f"{path}:{name}", "-i", "1x224x224x3")
    assert data["totals"]["macs"] == macs
    if params is not None:
        assert data["totals"]["params"] == params
    namespace: dict = {}
    exec(compile(APPLICATIONS, str(path), "exec"), namespace)
    assert data["totals"]["total_params"] == namespace[name]().count_params()
    assert data["uncounted"] == {}  # every layer of a keras.applications model is known

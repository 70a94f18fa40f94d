"""`dscalc search`: the design space of a network, costed exactly, its latency predicted per block, constrained,
its Pareto front marked. Oracles: the seed study's published Keras figures, Keras count_params() of every
candidate built with keras.layers here, torch's sum(p.numel()) and FlopCounterMode / 2 of equivalent torch models
built here, a brute-force O(n^2) dominance check written here, the JSON Schemas (jsonschema)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from dscalc.cost import search as S

KINDS3 = ("standard", "depthwise", "separable")
SHORT = {"standard": "conv", "depthwise": "dw", "separable": "sep"}
SCHEMA = json.loads((Path(__file__).parents[1] / "dscalc" / "report" / "schema.json").read_text())
SPACE_SCHEMA = json.loads(S.SCHEMA_PATH.read_text())


def _id(kinds: tuple[str, ...]) -> str:
    return "/".join(SHORT[k] for k in kinds)


@pytest.fixture(scope="module")
def cifar() -> dict[str, S.Candidate]:
    space = S.load("cifar_modules")
    return {c.id: c for c in (S.cost(space, p) for p in space.ids())}


def test_cifar_modules_has_27_distinct_candidates(cifar):
    assert S.load("cifar_modules").size == 27 == len(cifar)
    assert set(cifar) == {_id(k) for k in itertools.product(KINDS3, repeat=3)}


# The seed study's published Keras count_params() totals (BatchNorm statistics included)
@pytest.mark.parametrize(("kinds", "total"), [
    (("separable", "separable", "depthwise"), 236_810),
    (("separable", "separable", "separable"), 322_826),
    (("standard", "depthwise", "depthwise"), 834_890),
    (("standard", "separable", "separable"), 1_006_922),
])
def test_the_studys_reference_figures(cifar, kinds, total):
    assert cifar[_id(kinds)].keras_params == total


def _keras_cifar(keras, kinds):
    from keras import layers

    x = inputs = keras.Input((32, 32, 3))
    for m, c in enumerate((64, 128, 256)):
        x = layers.Conv2D(c, 1)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        for kind in kinds:
            if kind == "standard":
                x = layers.Conv2D(c, 3, padding="same")(x)
            elif kind == "depthwise":
                x = layers.DepthwiseConv2D(3, padding="same")(x)
            else:
                x = layers.SeparableConv2D(c, 3, padding="same")(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        if m < 2:
            x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras is not installed")
def test_keras_count_params_of_all_27(cifar):
    from dscalc.trace.keras import import_keras

    keras = import_keras()
    for kinds in itertools.product(KINDS3, repeat=3):
        model = _keras_cifar(keras, kinds)
        trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
        assert cifar[_id(kinds)].keras_params == model.count_params(), kinds
        assert cifar[_id(kinds)].params == trainable, kinds  # learnable: Keras' trainable weights


def _torch_cifar(kinds):
    from torch import nn

    mods, cin = [], 3
    for m, c in enumerate((64, 128, 256)):
        mods += [nn.Conv2d(cin, c, 1), nn.BatchNorm2d(c), nn.ReLU()]
        for kind in kinds:
            if kind == "standard":
                mods.append(nn.Conv2d(c, c, 3, padding=1))
            elif kind == "depthwise":
                mods.append(nn.Conv2d(c, c, 3, padding=1, groups=c))
            else:
                mods += [nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, c, 1)]
            mods += [nn.BatchNorm2d(c), nn.ReLU()]
        if m < 2:
            mods.append(nn.AvgPool2d(2))
        cin = c
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10)]
    return nn.Sequential(*mods).eval()


@pytest.mark.parametrize("kinds", [("standard", "depthwise", "separable"), ("separable",) * 3, ("depthwise",) * 3,
                                   ("standard",) * 3])
def test_macs_and_params_match_torch(cifar, kinds):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = _torch_cifar(kinds)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    c = cifar[_id(kinds)]
    assert 2 * c.macs == counter.get_total_flops()  # FlopCounterMode counts 2 per MAC, bias excluded
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.buffers == sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))


def test_mobilenet_spaces_contain_their_reference_networks():
    # MobileNet-V2 with k3 and expansion 6 everywhere is torchvision's: 300,774,272 MACs, 3,504,872 params
    # (weights.meta); MobileNet-V1 1.0/224 all depthwise-separable: 568,740,352 MACs, 4,209,088 weights (the paper)
    v2 = S.load("mobilenet_v2_blocks")
    pick = tuple(c.labels.index("e6") if c.name.startswith("e") else c.labels.index("k3") for c in v2.choices)
    c = S.cost(v2, pick)
    assert (c.macs, c.params) == (300_774_272, 3_504_872)
    v1 = S.load("mobilenet_v1_blocks")
    wanted = {"alpha": "a1.0", "resolution": "r224"}
    pick = tuple(c.labels.index(wanted.get(c.name, "dwpw")) for c in v1.choices)
    c = S.cost(v1, pick)
    assert (c.macs, c.weights) == (568_740_352, 4_209_088)
    assert v1.size == 2**13 * 16 and v2.size == 3**7 * 2**6


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


@pytest.mark.parametrize("args", [["--axes", "macs,params"], ["--predict", "--axes", "latency,params"],
                                  ["--predict", "--axes", "latency,training_memory,params", "--max-params", "900k"]])
def test_the_front_is_exactly_the_non_dominated_set(cli, fixed_ceilings, args):
    r = cli("search", "cifar_modules", *args, "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    axes = data["axes"]
    key = {"latency": "predicted_s"}
    feasible = [row for row in data["rows"] if row["feasible"]]
    points = {row["id"]: [row[key.get(a, a)] for a in axes] for row in feasible}
    for row in data["rows"]:
        dominated = any(_dominates(p, points[row["id"]]) for p in points.values()) if row["feasible"] else True
        assert row["front"] == (not dominated), row["id"]
    assert set(data["front"]) == {row["id"] for row in data["rows"] if row["front"]} != set()
    if "--max-params" in args:
        assert all((row["params"] <= 900_000) == row["feasible"] for row in data["rows"])


def test_few_predictions_for_27_candidates(cli, fixed_ceilings, tmp_path):
    lut = tmp_path / "lut.json"
    r = cli("search", "cifar_modules", "--lut", str(lut), "-f", "json")
    assert r.code == 0, r.stderr
    data, table = json.loads(r.stdout), json.loads(lut.read_text())
    assert data["predictions"] == len(table["blocks"]) < 40  # 27 candidates x 36 kernels each, predicted once each
    # a candidate's prediction is its blocks' sum (fixed calibration: in-network factor 1)
    conv3 = table["blocks"]["standard 3x3 1x64x32x32->1x64x32x32 bias float32"]
    # conftest.FIXED_MODELS standard: 20 µs + 2 * 9*64*64*1024 MACs / 50 GFLOP/s
    assert conv3["predicted_s"] == pytest.approx(20e-6 + 2 * 9 * 64 * 64 * 1024 / 50e9)
    assert all(row["predicted_s"] > 0 for row in data["rows"])


def test_score_with_metrics_ranks_like_the_study(cli, tmp_path):
    metrics = tmp_path / "m.csv"
    metrics.write_text("id,error\nsep/sep/dw,0.12\nsep/sep/sep,0.11\nconv/dw/dw,0.10\nconv/sep/sep,0.09\n")
    r = cli("search", "cifar_modules", "--metrics", str(metrics), "--score", "error + 0.05 * keras_params / 250000",
            "-f", "json")
    assert r.code == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    # by hand: 0.12 + 0.05 * 236,810 / 250,000 = 0.167362; 0.11 + 0.05 * 322,826 / 250,000 = 0.1745652
    assert [row["id"] for row in rows[:4]] == ["sep/sep/dw", "sep/sep/sep", "conv/dw/dw", "conv/sep/sep"]
    assert rows[0]["score"] == pytest.approx(0.167362) and rows[1]["score"] == pytest.approx(0.1745652)
    assert all(row["score"] is None for row in rows[4:])


@pytest.mark.parametrize("expr", ["__import__('os')", "params ** 2", "open('x')", "params.real", "[params]",
                                  "secret + 1", "'a' + 'b'", "lambda: 1", "params if macs else 1"])
def test_score_rejects_anything_but_arithmetic(cli, expr):
    r = cli("search", "cifar_modules", "--score", expr)
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.startswith("dscalc: error: --score: ") and r.stderr.count("\n") == 1


BAD_SPACES = {
    "empty choice": ("choices: {a: []}\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: $a, k: 3}}]}\n",
                     "choice 'a': must be a non-empty list"),
    "not a kind": ("choices: {a: [standard, dwconv]}\nnetwork: {input: [3, 8, 8], layers: [{choice: {kind: $a, "
                   "filters: 8}}]}\n", "'dwconv' is not a layer kind"),
    "undeclared": ("choices: {a: [3, 5]}\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: 8, k: $b}}]}\n",
                   "$b is used but not declared"),
    "unused": ("choices: {a: [3, 5], b: [1]}\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: 8, k: $a}}]}\n",
               "'b' is declared but never used"),
    "bad value": ("choices: {a: [3, -5]}\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: $a, k: 3}}]}\n",
                  None),
    "nested value": ("choices: {a: [[3]]}\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: 8, k: $a}}]}\n",
                     "values are numbers or words"),
    "bad alpha": ("choices: {alpha: [0, 1]}\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: 8}}]}\n",
                  "width multiplier takes positive numbers"),
    "unknown key": ("choices: {a: [3]}\nspace: 1\nnetwork: {input: [3, 8, 8], layers: [{conv: {filters: 8, k: $a}}]}\n",
                    "unknown key(s) space"),
    "not yaml": ("choices: [a: b\n", "malformed YAML"),
}


@pytest.mark.parametrize("name", list(BAD_SPACES))
def test_a_bad_space_is_one_line_exit_2(cli, tmp_path, name):
    text, message = BAD_SPACES[name]
    path = tmp_path / "space.yaml"
    path.write_text(text)
    r = cli("search", str(path))
    assert r.code == 2, r.stderr
    assert r.stderr.startswith(f"dscalc: error: {path}") and r.stderr.count("\n") == 1, r.stderr
    if message:
        assert message in r.stderr


def test_the_space_schema_and_the_validator_agree(tmp_path):
    import yaml

    jsonschema.Draft202012Validator.check_schema(SPACE_SCHEMA)
    for name in S.builtin_names():  # every built-in: both accept
        jsonschema.validate(yaml.safe_load((S.SPACES_DIR / f"{name}.yaml").read_text()), SPACE_SCHEMA)
    # what the schema can say (shapes, not references or the network's own rules), both reject
    structural = ["empty choice", "nested value", "unknown key"]
    for name in structural:
        raw = yaml.safe_load(BAD_SPACES[name][0])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(raw, SPACE_SCHEMA)
        with pytest.raises(S.BadInput):
            S.parse(raw)
    good = {"choices": {"k": {"values": [3, 5], "prefix": "k"}, "b": {"options": {"x": [{"conv": {"filters": 4}}]}}},
            "network": {"input": [3, 8, 8], "layers": [{"conv": {"filters": 8, "k": "$k"}}, "$b"]}}
    jsonschema.validate(good, SPACE_SCHEMA)
    assert S.parse(good).size == 2


def test_a_user_space_with_choice_layers(cli, tmp_path):
    # standard 3x3 8->16 at 8x8 (same): 9*8*16*64 = 73,728 MACs; grouped g2: 73,728 / 2 = 36,864;
    # pointwise: 8*16*64 = 8,192; depthwise keeps 8 channels: 9*8*64 = 4,608; separable: 4,608 + 8,192 = 12,800;
    # then the dense layer: 16*10 (8*10 after the depthwise) MACs
    path = tmp_path / "s.yaml"
    path.write_text("name: tiny\nchoices:\n  x: [standard, grouped, pointwise, depthwise, separable]\n"
                    "  resolution: {values: [8], prefix: r}\n"
                    "network:\n  input: [8, 8, 8]\n  layers:\n    - choice: {kind: $x, filters: 16, k: 3, groups: 2}\n"
                    "    - gap\n    - dense: {units: 10}\n")
    r = cli("search", str(path), "-f", "json")
    assert r.code == 0, r.stderr
    macs = {row["id"]: row["macs"] for row in json.loads(r.stdout)["rows"]}
    assert macs == {"conv/r8": 73_728 + 160, "gconv/r8": 36_864 + 160, "pw/r8": 8_192 + 160, "dw/r8": 4_608 + 80,
                    "sep/r8": 12_800 + 160}


def test_values_with_units():
    assert S.parse_count("300k", "x") == 300_000 and S.parse_count("1.5M", "x") == 1_500_000
    assert S.parse_count("300,000", "x") == 300_000
    assert S.parse_seconds("3ms", "x") == pytest.approx(0.003)
    assert S.parse_seconds("250us", "x") == pytest.approx(2.5e-4)
    for bad in ("3", "fast", "-3ms"):
        with pytest.raises(S.BadInput):
            S.parse_seconds(bad, "max_latency")
    with pytest.raises(S.BadInput):
        S.parse_count("1.5", "max_params")


def test_constraints_from_the_command_line(cli):
    r = cli("search", "cifar_modules", "--max-params", "300k", "--max-macs", "30M", "-f", "json")
    assert r.code == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    # by hand from the table of test_the_studys_reference_figures: params <= 300,000 and MACs <= 30,000,000 leaves
    # dw/dw/dw (7,490,048 MACs) and the three with one separable (20,072,960 MACs)
    assert {row["id"] for row in rows if row["feasible"]} == {"dw/dw/dw", "dw/dw/sep", "dw/sep/dw", "sep/dw/dw"}
    r = cli("search", "cifar_modules", "--max-latency", "soon")
    assert r.code == 2 and r.stderr.startswith("dscalc: error: --max-latency: ")


def test_a_large_space_is_sampled_with_a_seed(cli):
    pytest.importorskip("optuna")
    r = cli("search", "mobilenet_v2_blocks")
    assert r.code == 2 and "--budget" in r.stderr and r.stderr.count("\n") == 1
    runs = [json.loads(cli("search", "mobilenet_v2_blocks", "--budget", "12", "--seed", "3", "-f", "json").stdout)
            for _ in range(2)]
    ids = [[row["id"] for row in run["rows"]] for run in runs]
    assert ids[0] == ids[1] and len(set(ids[0])) == 12
    assert runs[0]["method"].startswith("sampled") and runs[0]["searched"] == 12


def test_the_pure_cost_path_never_imports_torch():
    code = ("import sys; from dscalc.cli import main\n"
            "try:\n    main(['search','cifar_modules','--max-params','300k'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_time_measures_the_front_and_the_lookup_table(cli, fixed_ceilings, tmp_path):
    lut = tmp_path / "lut.json"
    r = cli("search", "cifar_modules", "--time", "--max-params", "160k", "--lut", str(lut), "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    front = [row for row in data["rows"] if row["front"]]
    assert front and all(row["measured"]["median_s"] > 0 for row in front)
    assert all("measured" not in row for row in data["rows"] if not row["front"])
    table = json.loads(lut.read_text())
    assert any(b["measured"].get("eager", {}).get("median_s") for b in table["blocks"].values())
    for x in data["reorders"]:
        assert x["verdict"] in ("reordered", "too close to call")


def test_the_timed_network_is_the_costed_one(cifar):
    import torch

    from dscalc.measure.search import network_module

    for kinds in (("standard", "depthwise", "separable"), ("separable",) * 3):
        c = cifar[_id(kinds)]
        module = network_module(c.rows, c.sources)
        assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in _torch_cifar(kinds).parameters())
        with torch.no_grad():
            assert module(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_plot_and_formats(cli, fixed_ceilings, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "front.png"
    r = cli("search", "cifar_modules", "--predict", "--plot", str(png), "-f", "csv")
    assert r.code == 0, r.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
    header = r.stdout.splitlines()[0].split(",")
    assert {"name", "kind", "params", "macs", "flops", "keras_params", "predicted_s", "front"} <= set(header)
    assert len(r.stdout.splitlines()) == 28
    md = cli("search", "cifar_modules", "-f", "markdown")
    assert md.code == 0 and "| sep/sep/dw |" in md.stdout.replace("  ", " ")


def test_time_pairs_the_front_where_measurement_reorders_it(cli, fixed_ceilings, tmp_path, monkeypatch):
    # a front of several candidates (error falls as the layers grow), separate timings that reverse the predicted
    # order, and a paired ratio (predicted-faster / other) of 1.5 with its IQR above 1: 'reordered'
    from dscalc.measure import modules, timer
    from dscalc.measure.timer import Ratio, Timing

    metrics = tmp_path / "m.csv"
    metrics.write_text("id,error\ndw/dw/dw,0.3\nsep/sep/dw,0.2\nsep/sep/sep,0.1\n")
    slow = {"dw/dw/dw": 3e-3, "sep/sep/dw": 2e-3, "sep/sep/sep": 1e-3}

    def fake_time(module, shapes, settings, label="", own=False):
        m = slow.get(label, 1e-3)
        return Timing(m, m * 0.02, 7, 10, q1=m * 0.99, q3=m * 1.01)

    def fake_pair(a, b, settings, labels=("", "")):
        ta, tb = fake_time(None, None, None, labels[0]), fake_time(None, None, None, labels[1])
        return ta, tb, Ratio(1.5, 1.4, 1.6, 7)

    monkeypatch.setattr(modules, "time_module", fake_time)
    monkeypatch.setattr(timer, "measure_pair", fake_pair)
    r = cli("search", "cifar_modules", "--time", "--metrics", str(metrics), "--score", "error",
            "--axes", "latency,score", "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    assert set(data["front"]) == set(slow)  # each has the lowest error for its latency
    # predicted: dw/dw/dw < sep/sep/dw < sep/sep/sep (fewer MACs); measured the other way round: 3 pairs
    pairs = {(x["predicted_faster"], x["measured_faster"]) for x in data["reorders"]}
    assert pairs == {("dw/dw/dw", "sep/sep/dw"), ("dw/dw/dw", "sep/sep/sep"), ("sep/sep/dw", "sep/sep/sep")}
    assert all(x["verdict"] == "reordered" and x["paired_ratio"]["median"] == 1.5 for x in data["reorders"])
    table = cli("search", "cifar_modules", "--time", "--metrics", str(metrics), "--score", "error",
                "--axes", "latency,score", columns=120)
    assert "measured reorders the prediction: sep/sep/sep" in table.stdout

"""`dscalc explain` (issue 27): one convolution worked on small numbers, in exact arithmetic.

Oracles: the issue's four reference examples (worked by hand in the articles it cites, Keras layout); torch's
F.conv2d / F.conv_transpose2d on random examples of every kind, with the Keras -> torch layout conversion written
here by explicit index loops (not dscalc's); Keras 3 itself (on torch) for the layouts and the 'same' padding;
closed forms of the MAC counts worked by hand; a subprocess where importing torch fails (the core install).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from fractions import Fraction as Fr
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dscalc.cost.explain import Example, example
from dscalc.cost.spec import LayerSpec
from dscalc.errors import BadInput

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_KERAS = importlib.util.find_spec("keras") is not None
SCHEMA = json.loads((Path(__file__).parents[1] / "dscalc" / "report" / "schema.json").read_text())


def spec(**options) -> LayerSpec:
    options.setdefault("padding", "valid")
    return LayerSpec.from_options(**options)


def decimals(*texts: str) -> list[Fr]:
    return [Fr(t) for t in texts]


# ------------------------------------------------------------------------------- the reference examples

CONV2D = ["--cin", "2", "--cout", "3", "--k", "3", "--size", "3"]
DEPTHWISE = ["--kind", "depthwise", "--cin", "2", "--k", "3", "--size", "3"]
SEPARABLE = ["--kind", "separable", "--cin", "1", "--cout", "2", "--k", "3", "--size", "3", "--pointwise-start", "2"]
TRANSPOSED = ["--kind", "transposed", "--cin", "3", "--cout", "2", "--k", "3", "--size", "2"]

# issue 27: Conv2DTranspose 2x2x3 (0.1..1.2), kernel (3, 3, 2, 3) = 1..54, stride 1 -> 4x4x2
T_CHANNEL0 = [["1.4", "8.2", "20.8", "21.2"], ["17.2", "72.2", "119.0", "94.6"], ["71.2", "212.6", "259.4", "181.0"],
              ["91.4", "231.4", "265.6", "165.2"]]
T_CHANNEL1 = [["3.2", "14.5", "27.1", "25.7"], ["26.2", "95.6", "142.4", "109.0"], ["80.2", "236.0", "282.8", "195.4"],
              ["98.6", "248.5", "282.7", "175.1"]]


def test_conv2d_reference_example():
    # input 3x3x2 = 0.1..1.8, kernel (3, 3, 2, 3) = 1..54: 598.5, 615.6, 632.7; 598.5 = 274.5 (channel 0) + 324
    ex = example(spec(cin=2, cout=3, k="3", size="3"))
    assert ex.output.shape == (1, 1, 3)
    assert list(ex.output.values) == decimals("598.5", "615.6", "632.7")
    assert ex.cell(0, 0, 0).partials() == [(0, Fr("274.5")), (1, Fr(324))]
    # channel 0 by hand: sum over the 9 positions p of 0.1·(2p+1) · (6p+1)
    assert sum(Fr(2 * p + 1, 10) * (6 * p + 1) for p in range(9)) == Fr("274.5")


def test_depthwise_reference_example():
    ex = example(spec(kind="depthwise", cin=2, k="3", size="3"))
    assert list(ex.output.values) == decimals("96.9", "114.0")


def test_separable_reference_example():
    ex = example(spec(kind="separable", cin=1, cout=2, k="3", size="3"), pointwise_start=2)
    dw, pw = ex.stages
    assert list(dw.output.values) == [Fr("28.5")]  # 0.1·1 + 0.2·2 + ... + 0.9·9
    assert list(pw.kernel.values) == [2, 3]
    assert list(ex.output.values) == decimals("57.0", "85.5")  # 28.5·2, 28.5·3
    assert [(t.value, t.weight) for t in ex.cell(1, 0, 0).terms] == [(Fr("28.5"), 3)]


def test_transposed_reference_example():
    ex = example(spec(kind="transposed", cin=3, cout=2, k="3", size="2"))
    out = ex.output
    assert out.shape == (4, 4, 2)
    for c, expected in ((0, T_CHANNEL0), (1, T_CHANNEL1)):
        assert [[out[(y, x, c)] for x in range(4)] for y in range(4)] == [decimals(*row) for row in expected]
    corner = ex.cell(0, 0, 0)  # 1.4 = 0.1·1 + 0.2·2 + 0.3·3
    assert [(t.value, t.weight) for t in corner.terms] == [(Fr("0.1"), 1), (Fr("0.2"), 2), (Fr("0.3"), 3)]
    assert corner.value == Fr("1.4")


def test_the_cli_prints_every_reference_number(cli):
    text = cli("explain", *CONV2D).stdout
    for figure in ("598.5", "615.6", "632.7", "274.5", "324.0", "= 274.5 (input channel 0) + 324.0 (input channel 1) "
                   "= 598.5"):
        assert figure in text
    assert "96.9" in cli("explain", *DEPTHWISE).stdout and "114.0" in cli("explain", *DEPTHWISE).stdout
    text = cli("explain", *SEPARABLE).stdout
    assert "dw[0,0,0] (y, x, c) = 28.5" in text and "57.0" in text and "85.5" in text and "out[0,0,0] = 28.5·2" in text
    r = cli("explain", *TRANSPOSED)
    assert r.code == 0, r.stderr
    drawn = [line.split()[-4:] for line in r.stdout.splitlines()]
    for row in T_CHANNEL0 + T_CHANNEL1:  # each row of both channels, as the output matrix draws it
        assert row in drawn, row
    assert "out[0,0,0] = 0.1·1 + 0.2·2 + 0.3·3" in r.stdout


def test_json_carries_every_matrix(cli):
    data = json.loads(cli("explain", *TRANSPOSED, "-f", "json").stdout)
    assert data["command"] == "explain" and data["kind"] == "transposed"
    assert data["input"]["values"] == [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [[0.7, 0.8, 0.9], [1.0, 1.1, 1.2]]]
    assert data["stages"][0]["kernel"]["shape"] == [3, 3, 2, 3]
    assert data["stages"][0]["kernel"]["values"][0][0] == [[1, 2, 3], [4, 5, 6]]
    out = data["output"]["values"]
    assert [[out[y][x][0] for x in range(4)] for y in range(4)] == [[float(v) for v in r] for r in T_CHANNEL0]
    assert [[out[y][x][1] for x in range(4)] for y in range(4)] == [[float(v) for v in r] for r in T_CHANNEL1]
    cell = data["cells"][0]
    assert [(t["input"], t["weight"], t["at"], t["kernel_at"]) for t in cell["terms"]] == [
        (0.1, 1, [0, 0, 0], [0, 0, 0, 0]), (0.2, 2, [0, 0, 1], [0, 0, 0, 1]), (0.3, 3, [0, 0, 2], [0, 0, 0, 2])]
    assert data["macs"] == 3 * 2 * 9 * 4


@pytest.mark.parametrize("args", [CONV2D, DEPTHWISE, SEPARABLE, TRANSPOSED,
                                  ["--kind", "grouped", "--cin", "4", "--cout", "2", "--groups", "2", "--k", "3",
                                   "--size", "4", "--padding", "same", "--values", "random", "--seed", "3"],
                                  ["--kind", "pointwise", "--cin", "2", "--cout", "2", "--size", "3"]])
def test_json_matches_the_schema_and_csv_is_flat(cli, args):
    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(cli("explain", *args, "-f", "json").stdout)
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == 1
    csv = cli("explain", *args, "-f", "csv").stdout.splitlines()
    assert csv[0] == "tensor,stage,index,value" and "{" not in "\n".join(csv[1:])
    assert cli("explain", *args, "-f", "markdown").stdout.startswith("| ")


def test_the_depthwise_cells_that_feed_a_separable_cell_are_written_out(cli):
    data = json.loads(cli("explain", "--kind", "separable", "--cin", "2", "--cout", "1", "--k", "3", "--size", "3",
                          "--cell", "0,0,0", "-f", "json").stdout)
    assert [(c["stage"], c["channel"]) for c in data["cells"]] == [("depthwise", 0), ("depthwise", 1),
                                                                    ("pointwise", 0)]
    # by hand: dw channel 0 = sum of 0.1·(2p+1)·(2p+1), channel 1 = sum of 0.1·(2p+2)·(2p+2), p = 0..8 (input and
    # depthwise kernel both interleave the two channels); the pointwise kernel (1, 1, 2, 1) counts 1, 2 on its own
    dw0 = sum(Fr(2 * p + 1, 10) * (2 * p + 1) for p in range(9))
    dw1 = sum(Fr(2 * p + 2, 10) * (2 * p + 2) for p in range(9))
    assert data["cells"][0]["value"] == float(dw0) and data["cells"][1]["value"] == float(dw1)
    assert data["cells"][2]["value"] == float(dw0 * 1 + dw1 * 2)


# ------------------------------------------------------------------------------ random examples vs torch

# every kind, with strides, explicit padding, dilation, groups, depth multipliers and output padding
CASES = [
    dict(kind="standard", cin=2, cout=3, k="3", size="5", stride="2", padding="1"),
    dict(kind="standard", cin=3, cout=2, k="3x2", size="6x5", stride="1x2", padding="1x0", dilation="2x1"),
    dict(kind="grouped", cin=4, cout=4, groups=2, k="3", size="4", padding="1"),
    dict(kind="grouped", cin=4, cout=2, groups=2, k="2", size="5", stride="2"),
    dict(kind="depthwise", cin=2, depth_multiplier=2, k="3", size="5", stride="2", padding="1"),
    dict(kind="depthwise", cin=3, k="2", size="4", dilation="2"),
    dict(kind="pointwise", cin=3, cout=4, size="4"),
    dict(kind="pointwise", cin=2, cout=3, size="5", stride="2"),
    dict(kind="separable", cin=2, cout=3, k="3", size="4", padding="1", depth_multiplier=2),
    dict(kind="separable", cin=1, cout=2, k="3", size="5", stride="2"),
    dict(kind="transposed", cin=2, cout=3, k="3", size="3", stride="2", padding="1", output_padding="1"),
    dict(kind="transposed", cin=3, cout=2, k="2", size="3", dilation="2"),
    dict(kind="transposed", cin=1, cout=2, k="2", size="2", stride="3"),  # cells nothing lands on
    dict(kind="transposed", cin=2, cout=1, k="3", size="3", stride="2", padding="2"),  # crops products away
]


# Keras' own layers (their 'same' padding included); also through dscalc's torch check
KERAS_CASES = [
    ("Conv2D", dict(kind="standard", cin=2, cout=3, k="3", size="5", stride="2", padding="same")),
    ("Conv2D", dict(kind="grouped", cin=4, cout=2, groups=2, k="3", size="4", padding="same")),
    ("Conv2D", dict(kind="standard", cin=1, cout=2, k="2", size="5", dilation="2", padding="valid")),
    ("DepthwiseConv2D", dict(kind="depthwise", cin=2, depth_multiplier=2, k="3", size="5", stride="2",
                             padding="same")),
    ("SeparableConv2D", dict(kind="separable", cin=2, cout=3, k="3", size="4", depth_multiplier=2, padding="same")),
    ("Conv2DTranspose", dict(kind="transposed", cin=2, cout=3, k="3", size="3", stride="2", padding="same")),
    ("Conv2DTranspose", dict(kind="transposed", cin=2, cout=2, k="4", size="3", stride="2", padding="same")),
    ("Conv2DTranspose", dict(kind="transposed", cin=3, cout=2, k="3", size="2", padding="valid")),
]


def _ids(case: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in case.items())


def torch_output(ex: Example, options: dict):
    """The example through torch, the layouts converted here index by index (Keras -> torch)."""
    import torch
    import torch.nn.functional as F

    h, w, c = ex.input.shape
    x = torch.zeros(1, c, h, w, dtype=torch.float64)
    for iy in range(h):
        for ix in range(w):
            for ic in range(c):
                x[0, ic, iy, ix] = float(ex.input[(iy, ix, ic)])
    for stage in ex.stages:
        kh, kw, a, b = stage.kernel.shape
        layer = stage.layer
        geo = dict(stride=layer.stride, dilation=layer.dilation)
        pad_text = "0" if stage.name == "pointwise" and ex.kind == "separable" else options.get("padding", "0")
        pad = tuple(int(p) for p in pad_text.split("x"))
        pad = pad * 2 if len(pad) == 1 else pad
        if stage.name == "transposed":  # Keras (kh, kw, out, in) -> torch (in, out, kh, kw)
            weight = torch.zeros(b, a, kh, kw, dtype=torch.float64)
            for ky in range(kh):
                for kx in range(kw):
                    for o in range(a):
                        for i in range(b):
                            weight[i, o, ky, kx] = float(stage.kernel[(ky, kx, o, i)])
            op = tuple(int(p) for p in str(options.get("output_padding", "0")).split("x")) * 2
            x = F.conv_transpose2d(x, weight, padding=pad, output_padding=op[:2], **geo)
        elif stage.name == "depthwise":  # Keras (kh, kw, in, dm) -> torch (in·dm, 1, kh, kw), channel c·dm + m
            weight = torch.zeros(a * b, 1, kh, kw, dtype=torch.float64)
            for ky in range(kh):
                for kx in range(kw):
                    for ci in range(a):
                        for m in range(b):
                            weight[ci * b + m, 0, ky, kx] = float(stage.kernel[(ky, kx, ci, m)])
            x = F.conv2d(x, weight, padding=pad, groups=a, **geo)
        else:  # Keras (kh, kw, in/g, out) -> torch (out, in/g, kh, kw)
            weight = torch.zeros(b, a, kh, kw, dtype=torch.float64)
            for ky in range(kh):
                for kx in range(kw):
                    for j in range(a):
                        for o in range(b):
                            weight[o, j, ky, kx] = float(stage.kernel[(ky, kx, j, o)])
            x = F.conv2d(x, weight, padding=pad, groups=layer.groups, **geo)
    return x[0].permute(1, 2, 0)  # NCHW -> HWC


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_random_examples_agree_with_torch(case, seed):
    import torch

    ex = example(spec(**case), values="random", seed=seed)
    got = torch_output(ex, case)
    assert tuple(got.shape) == ex.output.shape
    want = torch.tensor([float(v) for v in ex.output.values], dtype=torch.float64).reshape(got.shape)
    assert torch.allclose(got, want, rtol=0, atol=1e-9), (got - want).abs().max()
    # random values are one-decimal inputs and integer weights: exact decimals, not all zero
    assert all((v * 10).denominator == 1 for v in ex.input.values) and any(ex.output.values)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("case", CASES + [c for _, c in KERAS_CASES], ids=_ids)
def test_dscalcs_own_torch_check_agrees_on_every_kind(case):
    from dscalc.trace.explain_check import check

    result = check(example(spec(**case), values="random", seed=5))
    assert result.ran and result.max_diff is not None and result.max_diff < 1e-9


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_a_mismatch_with_torch_is_an_internal_error(cli, monkeypatch):
    from dscalc.trace import explain_check

    real = explain_check._run
    monkeypatch.setattr(explain_check, "_run", lambda stage, x, torch: real(stage, x, torch) + 0.5)
    r = cli("explain", *CONV2D)
    assert r.code == 1 and r.stdout == ""
    assert r.stderr.startswith("dscalc: error: internal error: ExplainMismatch: torch F.conv2d disagrees")
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_the_agreement_is_shown(cli):
    import torch

    text = cli("explain", *SEPARABLE).stdout
    assert f"torch {torch.__version__.split('+')[0]} F.conv2d agrees: max |diff| = 0" in text


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["standard", "grouped", "depthwise", "pointwise", "separable", "transposed"]),
       cin=st.integers(1, 4), cout=st.integers(1, 4), k=st.integers(1, 4), size=st.integers(1, 6),
       stride=st.integers(1, 3), padding=st.integers(0, 2), dilation=st.integers(1, 2), groups=st.integers(2, 4),
       dm=st.integers(1, 2), out_pad=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_hypothesis_examples_agree_with_torch(kind, cin, cout, k, size, stride, padding, dilation, groups, dm,
                                              out_pad, seed):
    import torch

    case: dict = dict(kind=kind, cin=cin, k=str(k), size=str(size), stride=str(stride), padding=str(padding),
                      dilation=str(dilation))
    if kind == "pointwise":
        del case["k"], case["dilation"]
    if kind != "depthwise":
        case["cout"] = cout
    if kind == "grouped":
        case["groups"] = groups
    if kind in ("depthwise", "separable"):
        case["depth_multiplier"] = dm
    if kind == "transposed":
        case["output_padding"] = str(out_pad)
    try:
        ex = example(spec(**case), values="random", seed=seed)
    except BadInput:
        assume(False)
        return
    got = torch_output(ex, case)
    assert tuple(got.shape) == ex.output.shape
    want = torch.tensor([float(v) for v in ex.output.values], dtype=torch.float64).reshape(got.shape)
    assert torch.allclose(got, want, rtol=0, atol=1e-9)
    for stage in ex.stages:  # and the count identity on every example
        assert stage.products + stage.outside == stage.layer.macs


# -------------------------------------------------------------------------- Keras itself, on torch



@pytest.mark.skipif(not (HAS_KERAS and HAS_TORCH), reason="keras (on torch) is not installed")
@pytest.mark.parametrize("layer,case", KERAS_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(KERAS_CASES)])
def test_keras_computes_the_same_example(layer, case):
    """Keras' own layers with the example's kernels, as they are laid out: no layout conversion at all."""
    import numpy as np

    from dscalc.trace.keras import import_keras

    keras = import_keras()
    ex = example(spec(**case), values="random", seed=7)
    k = int(case["k"])
    stride = int(case.get("stride", "1"))
    common = dict(strides=stride, padding=case["padding"], use_bias=False)
    if "dilation" in case:
        common["dilation_rate"] = int(case["dilation"])
    if layer == "Conv2D":
        lay = keras.layers.Conv2D(case["cout"], k, groups=case.get("groups", 1), **common)
    elif layer == "DepthwiseConv2D":
        lay = keras.layers.DepthwiseConv2D(k, depth_multiplier=case["depth_multiplier"], **common)
    elif layer == "SeparableConv2D":
        lay = keras.layers.SeparableConv2D(case["cout"], k, depth_multiplier=case["depth_multiplier"], **common)
    else:
        lay = keras.layers.Conv2DTranspose(case["cout"], k, **common)
    x = np.array([float(v) for v in ex.input.values]).reshape(1, *ex.input.shape)
    lay.build(x.shape)
    lay.set_weights([np.array([float(v) for v in s.kernel.values]).reshape(s.kernel.shape) for s in ex.stages])
    got = keras.ops.convert_to_numpy(lay(x))[0]
    want = np.array([float(v) for v in ex.output.values]).reshape(ex.output.shape)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=1e-5, atol=1e-4), np.abs(got - want).max()


# -------------------------------------------------------------------------------------- the counts

@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_products_are_the_engines_macs(case):
    from dscalc.cost.kinds import KINDS

    ex = example(spec(**case), values="random", seed=2)
    engine = KINDS[case["kind"]].build(spec(**case).args)
    assert [s.layer.macs for s in ex.stages] == [layer.macs for layer in engine]
    for stage in ex.stages:
        if stage.name == "transposed":  # every scattered product lands on one cell or outside the output
            assert stage.products + stage.outside == stage.layer.macs and stage.outside >= 0
        else:  # every cell sums the same number of products, padding included
            lo, hi = stage.per_cell
            assert lo == hi and lo * len(stage.cells) == stage.layer.macs and stage.outside == 0


def test_counts_against_closed_forms_by_hand():
    # depthwise 3x3, cin 2, dm 2 on 5x5, stride 2, 'same' -> 3x3x4: 9 products per cell, 4·3·3 = 36 cells, 324 MACs
    ex = example(spec(kind="depthwise", cin=2, depth_multiplier=2, k="3", size="5", stride="2", padding="same"))
    (stage,) = ex.stages
    assert stage.per_cell == (9, 9) and len(stage.cells) == 36 and stage.layer.macs == 324 and stage.products == 324
    # standard 3x3, 1 -> 1 on 3x3 'same': 9 cells x 9 products = 81; the padding zeros: each corner cell reads 5,
    # each edge cell 3, the centre 0: 4·5 + 4·3 = 32 products multiply padding
    ex = example(spec(cin=1, cout=1, k="3", size="3", padding="same"))
    padded = sum(1 for c in ex.stages[0].cells.values() for t in c.terms if t.padded)
    assert ex.stages[0].products == 81 == ex.macs and padded == 32
    # transposed 3x3, 1 -> 1 on 2x2, padding 1: 4 inputs x 9 kernel values = 36 MACs; the output is
    # (2-1)·1 - 2 + 2 + 1 = 2 wide, each of its 4 cells gets one product from each of the 4 inputs: 16 land, 20 do not
    ex = example(spec(kind="transposed", cin=1, cout=1, k="3", size="2", padding="1"))
    (stage,) = ex.stages
    assert stage.layer.macs == 36 and stage.products == 16 and stage.outside == 20 and stage.per_cell == (4, 4)
    # separable: 3x3 depthwise on 3x3x1 = 9 MACs, pointwise 1 -> 2 on 1x1 = 2; the standard conv: 9·1·2 = 18
    ex = example(spec(kind="separable", cin=1, cout=2, k="3", size="3"))
    assert [s.layer.macs for s in ex.stages] == [9, 2] and ex.macs == 11
    assert ex.standard is not None and ex.standard.macs == 18


def test_the_tie_in_is_said_on_screen(cli):
    text = cli("explain", *CONV2D).stdout
    assert "= 54 = 18 products per cell x 3 cells" in text  # 3²·2·3·1² = 54
    text = cli("explain", *SEPARABLE).stdout
    assert "9 + 2 = 11 instead of 18 MACs, 1.64x fewer" in text and "0.6111" in text  # (9 + 2) / 18
    text = cli("explain", *TRANSPOSED).stdout
    assert "3·2·3²·2² = 216" in text and "3 to 12" in text


# ------------------------------------------------------------------------ the core install (no torch)

BLOCK_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked (core install)")
            return None

    sys.meta_path.insert(0, NoTorch())
    from dscalc.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    assert "torch" not in sys.modules, "torch was imported"
    sys.exit(code)
""")


def without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "100", "NO_COLOR": "1"})


@pytest.mark.parametrize("args", [CONV2D, SEPARABLE, TRANSPOSED])
def test_the_core_install_gives_the_same_numbers(cli, args):
    r = without_torch("explain", *args, "-f", "json")
    assert r.returncode == 0, r.stderr
    core = json.loads(r.stdout)
    assert core["check"] == {"by": None, "ops": [], "max_abs_diff": None, "agrees": None}
    full = json.loads(cli("explain", *args, "-f", "json").stdout)
    for key in ("input", "stages", "output", "cells", "rows", "macs"):
        assert core[key] == full[key], key
    table = without_torch("explain", *args)
    assert table.returncode == 0 and "torch is not installed" in table.stdout


def test_the_core_install_prints_the_reference_numbers():
    r = without_torch("explain", *CONV2D)
    assert r.returncode == 0, r.stderr
    assert "598.5" in r.stdout and "615.6" in r.stdout and "632.7" in r.stdout and "274.5" in r.stdout


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args,option", [
    (["--cin", "2", "--cout", "3", "--k", "3", "--size", "9"], "--size"),
    (["--cin", "2", "--cout", "3", "--k", "3", "--size", "4x9"], "--size"),
    (["--kind", "transposed", "--cin", "1", "--cout", "1", "--k", "3", "--size", "5", "--stride", "2"], "--size"),
    (["--cin", "2", "--cout", "3", "--k", "7", "--size", "8"], "--k"),
    (["--cin", "5", "--cout", "3", "--k", "3", "--size", "3"], "--cin"),
    (["--cin", "2", "--cout", "5", "--k", "3", "--size", "3"], "--cout"),
    (["--kind", "depthwise", "--cin", "3", "--depth-multiplier", "2", "--k", "3", "--size", "3"],
     "--depth-multiplier"),
    (["--kind", "separable", "--cin", "3", "--cout", "2", "--depth-multiplier", "2", "--k", "3", "--size", "3"],
     "--depth-multiplier"),
    (["--kind", "separable", "--cin", "2", "--cout", "5", "--k", "3", "--size", "3"], "--cout"),
    (["--cin", "2", "--cout", "3", "--k", "3"], "--size"),
    (["--cin", "2", "--cout", "3", "--k", "3", "--size", "3x3x3"], "--size"),
    (["--kind", "linear", "--cin", "2", "--cout", "3"], "--kind"),
    (["--kind", "transposed", "--cin", "2", "--cout", "2", "--groups", "2", "--k", "3", "--size", "2"], "--groups"),
    ([*CONV2D, "--values", "ones"], "--values"),
    ([*CONV2D, "--seed", "3"], "--seed"),
    ([*CONV2D, "--pointwise-start", "2"], "--pointwise-start"),
    ([*CONV2D, "--cell", "0,1,0"], "--cell"),
    ([*CONV2D, "--cell", "0,0"], "--cell"),
    ([*CONV2D, "--cell", "a,b,c"], "--cell"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, option):
    r = cli("explain", *args)
    assert r.code == 2, (r.code, r.stderr)
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"dscalc: error: {option}:"), r.stderr


def test_the_size_limit_names_the_limit(cli):
    r = cli("explain", "--cin", "2", "--cout", "3", "--k", "3", "--size", "9")
    assert "at most 8x8" in r.stderr and "9x9" in r.stderr


def test_explain_does_not_import_torch_when_it_is_blocked():
    r = without_torch("explain", *DEPTHWISE)  # the blocker asserts torch never reached sys.modules
    assert r.returncode == 0, r.stderr
    assert "96.9" in r.stdout


# --------------------------------------------------------------------------------------- rendering

def test_exact_decimals_never_show_float_noise():
    from dscalc.report.explain import dec, places

    assert dec(Fr("598.5"), 1) == "598.5" and dec(Fr(114), 1) == "114.0" and dec(Fr(-3, 10), 1) == "-0.3"
    assert dec(Fr(3), 0) == "3" and dec(Fr("615.6"), 2) == "615.60"
    assert places([Fr("0.1") * 3, Fr(7)], 1) == 1  # 0.30000000000000004 as a float; 0.3 exactly here
    with pytest.raises(ValueError):
        places([Fr(1, 3)])


def test_several_cells(cli):
    text = cli("explain", *CONV2D, "--cell", "1,0,0", "--cell", "2,0,0").stdout
    assert "out[0,0,1] (y, x, c) = 615.6" in text and "out[0,0,2] (y, x, c) = 632.7" in text
    assert "out[0,0,0]" not in text


def test_random_values_are_seeded():
    a = example(spec(cin=2, cout=2, k="3", size="4"), values="random", seed=11)
    b = example(spec(cin=2, cout=2, k="3", size="4"), values="random", seed=11)
    c = example(spec(cin=2, cout=2, k="3", size="4"), values="random", seed=12)
    assert a.output == b.output and a.input != c.input


def test_a_cell_outside_the_output_is_bad_input():
    ex = example(spec(cin=2, cout=3, k="3", size="3"))
    with pytest.raises(BadInput, match="outside the output"):
        ex.cell(0, 1, 0)


def test_the_readme_shows_what_explain_prints(cli):
    # the README's separable example at 80 columns; its last line names the torch that checked it (or its absence)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    command = "$ dscalc explain --kind separable --cin 1 --cout 2 --k 3 --size 3 --pointwise-start 2 --cell 0,0,0 " \
              "--cell 1,0,0\n"
    shown = readme[readme.index(command) + len(command):].split("```")[0].splitlines()
    printed = cli("explain", *SEPARABLE, "--cell", "0,0,0", "--cell", "1,0,0", columns=80).stdout.splitlines()
    assert printed[:-1] == shown[:-1]
    assert shown[-1].startswith("torch ") and shown[-1].endswith("F.conv2d agrees: max |diff| = 0 (float64, all 3 "
                                                                   "output values)")
    for figure in ("28.5", "57.0", "85.5", "0.1·1 + 0.2·2 + 0.3·3"):
        assert figure in "\n".join(shown)

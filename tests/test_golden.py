"""Golden tables for every command at 60, 80, 100 and 200 columns (colour off), and the promise behind them: no
cell of any table is cut - every number in the report appears whole on one line of what is drawn.

Each case lists figures derived independently of dscalc (by hand, from a paper, from torchvision's metadata or
from fvcore); they must appear in the table. Timing would vary, so the timed case uses a fixed timer, and
predictions use a fixed device cache (conftest.FIXED_CEILINGS). Regenerate with `pytest --overwrite`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable

import pytest

from dscalc.report.model import Report
from dscalc.report.render import Format, render

WIDTHS = (60, 80, 100, 200)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?[%x]?")


def assert_no_number_cut(report: Report, text: str) -> None:
    """Every number in every cell appears whole in one line of the drawn table (numbers are never cut)."""
    lines = text.splitlines()
    for grid in report.grids:
        for row in grid.rows:
            for cell in row:
                for number in _NUMBER.findall(cell):
                    assert any(number in line for line in lines), f"{number!r} (cell {cell!r}) is cut or missing"


def check(golden, name: str, report: Report, figures: tuple[str, ...]) -> None:
    for width in WIDTHS:
        text = render(report, Format.table, width=width)
        assert max(len(line) for line in text.splitlines()) <= width, f"{name} at {width} columns is too wide"
        assert_no_number_cut(report, text)
        for figure in figures:
            assert figure in text, f"{figure} missing from {name} at {width} columns"
        golden(f"{name}_{width}.txt", text)


CASES: dict[str, tuple[Callable[..., Report], tuple[str, ...]]] = {}


def case(name: str, *figures: str) -> Callable:
    def register(fn: Callable[..., Report]) -> Callable[..., Report]:
        CASES[name] = (fn, figures)
        return fn

    return register


def _layer(*args: str, **kw) -> Report:
    from dscalc.cost.spec import LayerSpec
    from dscalc.report import layer
    from dscalc.study.layer import study

    return layer.draw(study(LayerSpec.from_options(**kw), *args))


# MobileNets paper, Table 3: 462,422,016 / 52,283,392 mult-adds, 2,359,296 / 266,752 parameters
@case("layer_paper", "462,422,016", "52,283,392", "2,359,296", "266,752")
def layer_paper(fixed):
    return _layer(cin=512, cout=512, k="3", size="14")


# 3x3x3 dilated 32->64 on 16x56x56 ('same'): 27*32*64 = 55,296 weights; x 16*56*56 = 2,774,532,096 MACs;
# FLOP/B = 2 * 2,774,532,096 / (4 * (32 + 64) * 50,176 + 4 * 55,296) = 5,549,064,192 / 19,488,768 = 284.7;
# depthwise 27*32*50,176 = 43,352,064 MACs, pointwise 32*64*50,176 = 102,760,448 MACs
@case("layer_3d_dilated", "2,774,532,096", "55,296", "284.7", "43,352,064", "102,760,448")
def layer_3d(fixed):
    return _layer(cin=32, cout=64, k="3x3x3", size="16x56x56", dilation="2")


# compare of the MobileNets layer 3x3 64->128 at 112x112: 9*64*128*12,544 = 924,844,032 MACs; separable
# 9*64*12,544 + 64*128*12,544 = 7,225,344 + 102,760,448 = 109,985,792. Predicted with conftest.FIXED_MODELS:
#   standard  20 µs + 2 * 924,844,032 FLOPs / 50 GFLOP/s                          = 37.01 ms ("37 ms")
#   depthwise 50 µs + 4 * (2 * 64 * 12,544 + 576) bytes / 10 GB/s = 50 + 642.5 µs  = 692 µs
#   pointwise 10 µs + 2 * 102,760,448 FLOPs / 40 GFLOP/s                          = 5.148 ms
#   the pair 5.840 ms: separable predicted 37.01 / 5.840 = 6.3x faster, the pointwise kernel 88% of the pair
@case("compare_layer", "924,844,032", "109,985,792", "37 ms", "692 µs", "5.15 ms", "6.3x faster", "(88%")
def compare_layer(fixed):
    from dscalc.cost.spec import LayerSpec
    from dscalc.report import compare
    from dscalc.study.compare import CompareStudy
    from dscalc.study.layer import study

    spec = LayerSpec.from_options(cin=64, cout=128, k="3", size="112")
    return compare.draw(CompareStudy("layer", layer=study(spec, None, command="compare", predict=True)))


# a fixed timer: every call "takes" 1 µs + 1 ps per MAC, so the table is the same on every machine
@case("layer_timed", "924,844,032", "926 µs", "111 µs")
def layer_timed(fixed, fake_timer):
    from dscalc.measure.settings import Settings

    return _layer(Settings(threads=1), cin=64, cout=128, k="3", size="112")


# MobileNet-V1 at alpha 0.5: 149,497,088 mult-adds (the paper's width-multiplier table, DESIGN.md)
@case("network_mobilenet_v1_half", "149,497,088")
def network_half(fixed):
    from dscalc.report import network
    from dscalc.study.network import study

    return network.draw(study("mobilenet_v1", alpha=0.5))


@case("network_list", "mobilenet_v1", "xception")
def network_list(fixed):
    from dscalc.report import network
    from dscalc.study.network import builtins

    return network.builtins(builtins())


# cifar_conv by hand (tests/test_network.py): 230,885,888 MACs; as separable 31,623,680
@case("compare_network", "230,885,888", "31,623,680")
def compare_network(fixed):
    from dscalc.report import compare
    from dscalc.study.compare import network_study

    return compare.draw(network_study("cifar_conv", alpha=1.0, resolution=None, as_="separable", batch=1,
                                      dtype="float32", settings=None))


# dscalc search cifar_modules: the seed study's published Keras count_params() totals of (sep, sep, dw), (sep, sep,
# sep), (conv, dw, dw) and (conv, sep, sep); predictions from the fixed calibration of conftest
@case("search_cifar_modules", "236,810", "322,826", "834,890", "1,006,922")
def search_cifar_modules(fixed):
    from dscalc.measure.search import run_search
    from dscalc.report import search

    return search.build(run_search("cifar_modules", predict=True, max_params=900_000))


MODEL = textwrap.dedent("""
    from torch import nn

    def net():
        return nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1))
""")


# Conv2d(16, 32, 3, padding=1) on 8x8: 16*32*9*64 = 294,912 MACs, 1x1 32->8: 32*8*64 = 16,384; as separable the
# first becomes 16*9*64 + 16*32*64 = 9,216 + 32,768 = 41,984
@case("compare_model", "311,296", "58,368")
def compare_model(fixed, tmp_path, monkeypatch):
    from dscalc.report import compare
    from dscalc.study.compare import model_study
    from dscalc.trace.source import ModelSource

    (tmp_path / "small.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    return compare.draw(model_study(ModelSource.of("small.py"), [(1, 16, 8, 8)], None))


# resnet18 at 224x224: torchvision's metadata says 1.814 GMACs (_ops) and 11,689,512 params; fvcore counts
# 1,819,065,856 (it adds BatchNorm and pooling); its 11,689,512 float32 parameters take
# 4 x 11,689,512 = 46,758,048 bytes
@case("profile_resnet18_depth1", "1,814,073,344", "11,689,512", "1,819,065,856", "46,758,048")
def profile_resnet18(fixed):
    pytest.importorskip("torchvision")
    from dscalc.report import profile
    from dscalc.study.model import study
    from dscalc.trace.source import ModelSource

    return profile.draw(study(ModelSource.of("torchvision:resnet18"), [(1, 3, 224, 224)], depth=1, check="fvcore"))


# the fixed ceilings of conftest: 100 GFLOP/s fp32, 20 GB/s, 5 µs
@case("device", "100.0 GFLOP/s", "20.0 GB/s", "5.0 µs", "3 days ago")
def device(fixed):
    from dscalc.report import device
    from dscalc.study.device import device as study

    return device.draw(study("cpu", threads=1))


# 3x3, cin = cout = N: MAC speedup 1 / (1/N + 1/9): N=32 7.02x, 64 7.89x, 128 8.41x (the paper's closed form)
@case("sweep_predicted", "7.02x", "7.89x", "8.41x")
def sweep(fixed):
    from dscalc.measure.settings import Settings
    from dscalc.report import sweep
    from dscalc.study.sweep import study

    return sweep.draw(study(cin="32:128:x2", cout=None, k="3", size="56", batch="1,8", dtypes=["float32"],
                            formats=[False], settings=Settings(threads=1), measure=False))


# issue 27's separable example: input 3x3x1 = 0.1..0.9, depthwise kernel 1..9 -> 0.1·1 + 0.2·2 + ... + 0.9·9 = 28.5;
# pointwise kernel (1, 1, 1, 2) = 2, 3 -> 28.5·2 = 57.0, 28.5·3 = 85.5 (both cells shown); MACs 9 + 2 = 11
# against the standard conv's 9·1·2 = 18: 11/18 = 0.6111. The torch check is fixed (its version and rounding vary
# by machine).
@case("explain_separable", "28.5", "57.0", "85.5", "0.6111", "28.5·3")
def explain_separable(fixed):
    from dscalc.cost.spec import LayerSpec
    from dscalc.report import explain
    from dscalc.study.explain import study
    from dscalc.trace.explain_check import Check

    spec = LayerSpec.from_options(kind="separable", cin=1, cout=2, k="3", size="3", padding="valid")
    fixed_check = Check("2.x", ("F.conv2d", "F.conv2d"), 0.0)
    return explain.draw(study(spec, pointwise_start=2, cells=[(0, 0, 0), (1, 0, 0)], checker=lambda ex: fixed_check))


@pytest.fixture
def fake_timer(monkeypatch):
    """Every kernel "takes" 1 µs + 1 ps per MAC, with a 2% IQR over 7 runs."""
    from dscalc.measure import latency
    from dscalc.measure.timer import Ratio, Timing

    def timing(macs: int) -> Timing:
        median = 1e-6 + macs * 1e-12
        return Timing(median, median * 0.02, 7, 10, q1=median * 0.99, q3=median * 1.01)

    def against(original, first, second, settings):
        a, b = timing(original.macs), timing(first.macs + second.macs)
        return a, b, Ratio(a.median / b.median, a.median / b.median * 0.99, a.median / b.median * 1.01, 7)

    monkeypatch.setattr(latency, "time_layer", lambda layer, settings: timing(layer.macs))
    monkeypatch.setattr(latency, "time_against", against)


@pytest.mark.parametrize("name", list(CASES))
def test_golden_table(name, golden, fixed_ceilings, request, tmp_path):
    fn, figures = CASES[name]
    kwargs = {"fixed": fixed_ceilings}
    if "fake_timer" in fn.__code__.co_varnames:
        kwargs["fake_timer"] = request.getfixturevalue("fake_timer")
    if "tmp_path" in fn.__code__.co_varnames:
        kwargs["tmp_path"] = tmp_path
    if "monkeypatch" in fn.__code__.co_varnames:
        kwargs["monkeypatch"] = request.getfixturevalue("monkeypatch")
    check(golden, name, fn(**kwargs), figures)


def test_cli_prints_what_the_golden_shows(cli, fixed_ceilings):
    for width in WIDTHS:
        r = cli("layer", "--k", "3", "--cin", "512", "--cout", "512", "--size", "14", columns=width)
        assert r.code == 0, r.stderr
        from conftest import GOLDEN

        assert r.stdout == (GOLDEN / f"layer_paper_{width}.txt").read_text()

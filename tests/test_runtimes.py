"""--runtime: the registry's checks (bad names exit 2, a missing extra exit 1), each runtime computing what torch
eager computes, threads reaching the runtime, timing rows in every output format, the counts unchanged by the
runtime, dynamo reset per configuration, and the side-by-side verdicts of compare and sweep.

Tests that need an optional runtime skip without it; onnxruntime is in the `onnx` extra (and in `test`). No test
asserts how long anything takes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_in_process

from dscalc.cost.layers import conv, linear
from dscalc.cost.spec import LayerSpec
from dscalc.measure import modules, runtimes
from dscalc.measure.settings import Settings, configured

dscalc = run_in_process

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_LITERT = all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "ai_edge_litert"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="needs onnxruntime: pip install 'dscalc[onnx]'")
needs_litert = pytest.mark.skipif(not HAS_LITERT, reason="needs litert-torch + ai-edge-litert: 'dscalc[litert]'")

TINY = ["--k", "3", "--cin", "8", "--cout", "8", "--size", "8"]
#: quick timing settings for the tests that call the measuring code directly (no figure is asserted)
QUICK = dict(min_run_time=0.02, max_run_time=0.1)


# ------------------------------------------------------------------------------------------ names and extras

@pytest.mark.parametrize("value, message", [
    ("bogus", "--runtime: unknown runtime 'bogus'; expected eager, compile, onnxruntime, litert (comma-separated)"),
    ("eager,,onnxruntime", "--runtime: unknown runtime an empty name; expected eager, compile, onnxruntime, "
                           "litert (comma-separated)"),
    ("eager,EAGER", "--runtime: eager is given twice"),
])
def test_bad_runtime_names_are_one_line_exit_2(value, message):
    for args in (["layer", *TINY, "--time"], ["sweep", "--cin", "8"], ["device"]):
        r = dscalc(*args, "--runtime", value)
        assert (r.returncode, r.stderr) == (2, f"dscalc: error: {message}\n"), args


def test_runtime_without_time_is_bad_input():
    r = dscalc("layer", *TINY, "--runtime", "onnxruntime")
    assert (r.returncode, r.stderr) == (2, "dscalc: error: --runtime: applies to measurements: add --time\n")
    r = dscalc("sweep", "--cin", "8", "--no-time", "--runtime", "eager,compile")
    assert r.returncode == 2 and "add --time" in r.stderr


@pytest.mark.parametrize("name", ["onnxruntime", "litert"])
def test_channels_last_is_refused_where_the_runtime_picks_its_layout(name, monkeypatch):
    monkeypatch.setattr(runtimes, "require", lambda n: None)  # the check comes first, installed or not
    r = dscalc("layer", *TINY, "--time", "--channels-last", "--runtime", f"eager,{name}")
    assert r.returncode == 2 and r.stderr.startswith("dscalc: error: --channels-last: applies to torch's runtimes")
    r = dscalc("sweep", "--cin", "8", "--channels-last", "both", "--runtime", name)
    assert r.returncode == 2 and "--channels-last" in r.stderr


@pytest.mark.parametrize("name, extra", [("onnxruntime", "onnx"), ("litert", "litert")])
def test_a_missing_runtime_names_its_extra_exit_1(name, extra, monkeypatch):
    # the runtime's first module is made to look uninstalled
    missing = runtimes.RUNTIMES[name].needs[0]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == missing else real(m, *a))
    for args in (["layer", *TINY, "--time"], ["sweep", "--cin", "8"], ["device"],
                 ["network", "cifar_conv", "--time"], ["compare", *TINY, "--time"]):
        r = dscalc(*args, "--runtime", f"eager,{name}")
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr == (f"dscalc: error: --runtime {name} needs {missing}, which is not installed: "
                            f"pip install 'dscalc[{extra}]'\n")


def test_litert_refuses_cuda(monkeypatch):
    monkeypatch.setattr(runtimes, "require", lambda n: None)
    with pytest.raises(Exception, match="litert runs on cpu here, not on cuda"):
        runtimes.check(["litert"], Settings(device="cuda"))


def test_runtime_names_never_import_torch():
    # checking --runtime is part of the light path: `dscalc layer` without --time imports no torch
    code = ("import sys\nfrom dscalc.cli import main\n"
            "for args in (['--runtime', 'eager'], ['--runtime', 'bogus']):\n"
            "    try:\n        main(['layer', '--k', '3', '--cin', '8', '--cout', '8', *args])\n"
            "    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_runtime_has_one_entry():
    assert list(runtimes.RUNTIMES) == ["eager", "compile", "onnxruntime", "litert"]
    assert {r.extra for r in runtimes.RUNTIMES.values()} == {"torch", "onnx", "litert"}
    for r in runtimes.RUNTIMES.values():
        assert r.threads and r.label and r.needs and "cpu" in r.devices


# ---------------------------------------------------------------------------------- the same numbers as eager

def _outputs(module: torch.nn.Module, shapes: list[tuple[int, ...]], runtime: str, threads: int = 1):
    """Eager's and the runtime's outputs of one module on the same random inputs, and the runtime's build."""
    s = Settings(threads=threads, runtime=runtime, **QUICK)
    with configured(s):
        placed, xs = modules.place(module, shapes, s)
        expected = runtimes.build(placed, xs, Settings(threads=threads)).outputs()
        built = runtimes.build(placed, xs, s)
        try:
            return expected, built.outputs(), built
        finally:
            built.close()


LAYERS = {
    "standard 3x3": (conv(8, 16, 3, 12, padding="same"), (1, 8, 12, 12)),
    "strided 5x5, batch 2": (conv(4, 6, 5, 11, stride=2, padding=2, batch=2), (2, 4, 11, 11)),
    "depthwise": (conv(8, 8, 3, 10, groups=8, padding="same"), (1, 8, 10, 10)),
    "pointwise with bias": (conv(8, 4, 1, 6, bias=True), (1, 8, 6, 6)),
    "linear": (linear(32, 10), (1, 32)),
}


def _pair() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                               torch.nn.Conv2d(8, 16, 1, bias=False))


@needs_ort
@pytest.mark.parametrize("which", list(LAYERS))
def test_onnx_export_computes_what_eager_computes(which):
    layer, shape = LAYERS[which]
    expected, got, built = _outputs(modules.module_for(layer), [shape], "onnxruntime")
    assert [e.shape for e in expected] == [g.shape for g in got] == [layer.output_shape]
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    assert built.settings["provider"] == "CPUExecutionProvider"
    assert built.settings["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert built.setup_s is not None and built.setup_s > 0


@needs_ort
def test_onnx_export_of_a_pair_and_a_model():
    expected, got, _ = _outputs(_pair(), [(1, 8, 9, 9)], "onnxruntime")
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    expected, got, _ = _outputs(model.eval(), [(2, 3, 16, 16)], "onnxruntime")
    assert got[0].shape == (2, 4)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)


@needs_ort
@pytest.mark.parametrize("threads", sorted({1, min(2, os.cpu_count() or 1)}))
def test_onnxruntime_session_gets_the_thread_count(threads):
    # read back from the session itself (ONNX Runtime's own default is 0: "choose for me")
    _, _, built = _outputs(_pair(), [(1, 8, 9, 9)], "onnxruntime", threads=threads)
    assert built.settings["intra_op_num_threads"] == threads
    assert built.settings["inter_op_num_threads"] == 1
    # no spinning threads (two sessions timed against each other slowed each other 2-2.8x with them)
    assert built.settings["allow_spinning"] is False


@needs_litert
def test_litert_computes_what_eager_computes():
    expected, got, built = _outputs(_pair(), [(1, 8, 9, 9)], "litert")
    assert got[0].shape == (1, 16, 9, 9)  # NHWC inside LiteRT, NCHW again outside
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)
    assert built.settings["num_threads"] == 1 and built.settings["delegate"] == "XNNPACK"
    layer, shape = LAYERS["linear"]
    expected, got, _ = _outputs(modules.module_for(layer), [shape], "litert")
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)


def test_compile_computes_what_eager_computes_with_dynamo_reset_per_configuration():
    # with dynamo's recompile limit at 1, a second shape of the same module class would run eager (silently)
    # unless each configuration starts from a reset cache: both compile to one graph
    import torch._dynamo

    saved = torch._dynamo.config.error_on_recompile
    with torch._dynamo.config.patch(recompile_limit=1):
        for size in (6, 7):
            expected, got, built = _outputs(torch.nn.Conv2d(4, 4, 3), [(1, 4, size, size)], "compile")
            np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-5)
            assert built.settings["graphs"] == 1 and built.settings["graph_breaks"] == 0
            assert built.setup_s is not None and built.setup_s > 0
    assert torch._dynamo.config.error_on_recompile == saved  # restored when the build is closed


# ------------------------------------------------------------------------------------ rows in every format

@needs_ort
def test_a_runtime_failure_is_that_rows_error(monkeypatch):
    def broken(module, inputs):
        raise RuntimeError("Exporting the operator 'aten::thing' to ONNX is not supported\nmore")

    monkeypatch.setattr(runtimes, "export_onnx", broken)
    t = modules.time_layer(conv(4, 4, 3, 6), Settings(runtime="onnxruntime", **QUICK))
    assert t.median is None and t.runtime == "onnxruntime"
    assert t.error == "onnxruntime: Exporting the operator 'aten::thing' to ONNX is not supported"
    assert t.to_dict()["runtime"] == "onnxruntime" and "median_s" not in t.to_dict()


@needs_ort
def test_timing_rows_in_every_format(fixed_ceilings):
    import onnxruntime

    from dscalc.report.draw import draw
    from dscalc.report.render import Format, render
    from dscalc.study.layer import study

    spec = LayerSpec.from_options(cin=8, cout=8, k="3", size="8")
    runs = runtimes.check(["eager", "onnxruntime"], Settings(threads=1, **QUICK))
    report = draw(study(spec, runs[0], tuple(runs), command="compare"))
    data = json.loads(render(report, Format.json))
    assert [o["runtime"] for o in data["runtimes"]] == ["eager", "onnxruntime"]
    assert data["timing"] == data["runtimes"][0]
    for obj, version in zip(data["runtimes"], (torch.__version__.split("+")[0], onnxruntime.__version__)):
        assert obj["runtime_version"].split("+")[0] == version and obj["threads"] == 1
        assert obj["verdict"] in ("separable wins", "standard wins", "too close to call")
        assert [r["name"] for r in obj["rows"]] == ["standard", "depthwise", "pointwise", "dw then pw"]
        for row in obj["rows"]:
            assert row["runtime"] == obj["runtime"] and row["median_s"] > 0 and row["runs"] >= 1
            assert row["runtime_version"] == obj["runtime_version"]
    ort_row = data["runtimes"][1]["rows"][0]
    assert ort_row["runtime_settings"]["intra_op_num_threads"] == 1 and ort_row["setup_s"] > 0

    import csv
    import io

    lines = list(csv.DictReader(io.StringIO(render(report, Format.csv))))
    assert [(r["name"], r["timing.runtime"]) for r in lines] == [
        (n, rt) for rt in ("eager", "onnxruntime") for n in ("standard", "depthwise", "pointwise", "separable")]
    assert all(float(r["timing.median_s"]) > 0 for r in lines)
    assert {r["timing.runtime_settings.intra_op_num_threads"] for r in lines[4:]} == {"1"}
    assert lines[3]["timing.verdict"] and lines[7]["timing.verdict"]
    # the counts on every line are the layer's: 3x3 8->8 on 8x8 = 8*8*9*64 = 36,864 MACs
    assert {r["macs"] for r in lines if r["name"] == "standard"} == {"36864"}

    table = render(report, Format.table, width=100)
    assert "by runtime" in table and "onnxruntime" in table and "ONNX Runtime " + onnxruntime.__version__ in table
    assert table.count("separable speedup:") == 2  # a verdict per runtime
    markdown = render(report, Format.markdown)
    assert "| standard | eager |" in markdown and "|  | onnxruntime |" in markdown


@needs_ort
def test_cli_json_records_the_runtime_and_its_threads(fixed_ceilings):
    r = dscalc("layer", *TINY, "--time", "--threads", "1", "--runtime", "onnxruntime", "-f", "json",
               env=fixed_ceilings)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    rows = data["timing"]["rows"]
    assert {row["runtime"] for row in rows} == {"onnxruntime"}
    assert {row["runtime_settings"]["intra_op_num_threads"] for row in rows} == {1}


# -------------------------------------------------------------------------------------- counts stay the counts

@needs_ort
def test_counts_are_the_same_whatever_the_runtime(fixed_ceilings, tmp_path):
    def counts(*args: str) -> dict:
        r = dscalc(*args, "-f", "json", env=fixed_ceilings)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    timed = ["--time", "--threads", "1", "--runtime", "eager,onnxruntime"]
    plain, both = counts("layer", *TINY), counts("layer", *TINY, *timed)
    assert (plain["rows"], plain["separable"], plain["ratio"]) == (both["rows"], both["separable"], both["ratio"])
    # 3x3 8->8 on 8x8: 8*8*9*64 = 36,864 MACs; separable 8*9*64 + 8*8*64 = 4,608 + 4,096 = 8,704
    assert plain["rows"][0]["macs"] == 36_864 and plain["separable"]["macs"] == 8_704

    timed = ["--time", "--threads", "1", "--runtime", "onnxruntime"]  # (one runtime: the tests above show several)
    spec = tmp_path / "tiny.yaml"
    spec.write_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3}\n  - relu\n  - pointwise: {filters: 4}\n")
    plain, both = counts("network", str(spec)), counts("network", str(spec), *timed)
    assert (plain["rows"], plain["totals"]) == (both["rows"], both["totals"])
    # conv 3->8 3x3 same on 8x8: 3*8*9*64 = 13,824; pointwise 8->4: 8*4*64 = 2,048
    assert plain["totals"]["macs"] == 13_824 + 2_048
    assert [o["runtime"] for o in both["runtimes"]] == ["onnxruntime"]
    assert all(row["runtime"] == o["runtime"] for o in both["runtimes"] for row in o["rows"])

    model = tmp_path / "m.py"
    model.write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    args = ["profile", str(model), "-i", "1x3x10x10"]
    plain, both = counts(*args), counts(*args, *timed)
    assert (plain["rows"], plain["totals"]) == (both["rows"], both["totals"])
    assert plain["totals"]["macs"] == 3 * 8 * 9 * 8 * 8 == 13_824  # 10x10 -> 8x8, no padding
    for obj in both["runtimes"]:
        assert obj["end_to_end"]["runtime"] == obj["runtime"] and obj["end_to_end"]["median_s"] > 0
        assert obj["rows"][0]["separable"]["verdict"] in ("separable wins", "standard wins", "too close to call")


@needs_ort
def test_compare_model_and_network_per_runtime(fixed_ceilings, tmp_path):
    model = tmp_path / "m.py"
    model.write_text("from torch import nn\ndef net():\n    return nn.Conv2d(8, 16, 3, padding=1)\n")
    r = dscalc("compare", str(model), "-i", "1x8x8x8", "--time", "--threads", "1", "--runtime", "eager,onnxruntime",
               "-f", "json", env=fixed_ceilings)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    # 3x3 8->16 on 8x8: 8*16*9*64 = 73,728; as dw + pw: 8*9*64 + 8*16*64 = 4,608 + 8,192 = 12,800
    assert (data["original"]["macs"], data["variant"]["macs"]) == (73_728, 12_800)
    assert [o["runtime"] for o in data["runtimes"]] == ["eager", "onnxruntime"]
    for o in data["runtimes"]:
        assert o["original_s"] > 0 and o["variant_s"] > 0 and o["speedup"] == pytest.approx(
            o["original_s"] / o["variant_s"])


# ----------------------------------------------------------------------------------------------------- sweep

@needs_ort
def test_sweep_gives_a_verdict_per_runtime_and_plots_a_line_each(fixed_ceilings, tmp_path):
    pytest.importorskip("matplotlib")
    from dscalc.report.draw import draw
    from dscalc.report.plot import sweep_plot
    from dscalc.study.sweep import study

    runs = runtimes.check(["eager", "onnxruntime"], Settings(threads=1, **QUICK))
    swept = study(cin="8", cout=None, k="3", size="8", batch="1,2", dtypes=["float32"], formats=[False],
                  settings=runs[0], measure=True, runs=tuple(runs))
    report, rows = draw(swept), list(swept.configs)
    assert [(r["batch"], r["runtime"]) for r in report.data["rows"]] == [
        (1, "eager"), (1, "onnxruntime"), (2, "eager"), (2, "onnxruntime")]
    for r in report.data["rows"]:
        assert r["mac_speedup"] == pytest.approx(1 / (1 / 8 + 1 / 9))  # 3x3, 8 -> 8: 1 / (1/N + 1/D_K²)
        assert r["verdict"] in ("separable wins", "standard wins", "too close to call")
        assert r["runtime_version"] and r["standard_s"] > 0 and r["separable_s"] > 0
    verdicts = {}
    for r in report.data["rows"]:
        verdicts.setdefault(r["batch"], set()).add(r["verdict"])
    assert report.data["measured"] == 2
    assert report.data["runtimes_disagree"] == sum(len(v) > 1 for v in verdicts.values())
    grid = report.grids[0]
    assert [c.header for c in grid.columns][-3:] == ["eager", "onnxruntime", "winner"]
    assert len(grid.rows) == 2  # one line per config, the runtimes side by side

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    real = plt.subplots

    def spy(*a, **k):
        fig, ax = real(*a, **k)
        made.append(ax)
        return fig, ax

    plt.subplots = spy
    try:
        sweep_plot(rows, str(tmp_path / "s.png"))
    finally:
        plt.subplots = real
    labels = [line.get_label() for line in made[0].get_lines()]
    assert sum(label.endswith("eager: measured") for label in labels) == 2  # batch 1 and 2
    assert sum(label.endswith("onnxruntime: measured") for label in labels) == 2
    assert sum("predicted" in label for label in labels) == 2  # the roofline once per config line, not per runtime
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------------- device

@needs_ort
def test_device_measures_each_runtimes_matmul_and_call_floor(fixed_ceilings):
    r = dscalc("device", "--threads", "1", "--runtime", "eager,onnxruntime", "-f", "json", env=fixed_ceilings)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["peak_flops"]["float32"] == 1e11  # the cached machine ceilings are untouched
    assert [o["runtime"] for o in data["runtimes"]] == ["eager", "onnxruntime"]
    for o in data["runtimes"]:
        assert o["peak_flops"]["float32"] > 0 and o["launch"] > 0
        assert o["matmul"]["runtime"] == o["runtime"] and o["floor"]["runtime"] == o["runtime"]

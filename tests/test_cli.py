"""Layer 3: the CLI as a user runs it - the installed console script in a subprocess, typer's CliRunner,
golden tables at a fixed width with colour off, and every bad-input case with its message and status."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOLDEN, SCRIPT, run_script
from typer.testing import CliRunner

from dscalc.cli import app, main

run = run_script  # conftest: the installed console script in a subprocess


def test_console_script_is_installed():
    assert Path(SCRIPT).exists(), "pip install -e . should put the dscalc script beside the interpreter"


def test_paper_layer_golden_table():
    # Golden rendering of the MobileNets paper's Table 3 layer. The numbers in it are the paper's
    # (462,422,016 and 52,283,392 MACs; 2,359,296 and 266,752 params), asserted independently below.
    result = run("layer", "--k", "3", "--cin", "512", "--cout", "512", "--size", "14")
    assert result.returncode == 0, result.stderr
    for figure in ("462,422,016", "52,283,392", "2,359,296", "266,752"):
        assert figure in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert result.stdout == (GOLDEN / "layer_paper_80.txt").read_text()


def test_default_layer_states_its_assumed_size():
    result = run("layer", "--k", "3", "--cin", "64", "--cout", "128")
    assert result.returncode == 0
    assert "default --size 56" in result.stdout
    # 3*3*64*128*56*56 = 231,211,008 MACs (worked by hand)
    assert "231,211,008" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_json_schema():
    result = run("layer", "--k", "3", "--cin", "64", "--cout", "128", "--size", "56", "--format", "json")
    data = json.loads(result.stdout)
    assert [r["kind"] for r in data["rows"]] == ["standard", "depthwise", "pointwise"]
    required = {"name", "kind", "params", "weights", "bias", "macs", "flops", "input_shape", "output_shape",
                "bytes", "intensity"}
    for row in data["rows"]:
        assert required <= row.keys()
        assert row["flops"] == 2 * row["macs"]
    std = data["rows"][0]
    assert std["macs"] == 3 * 3 * 64 * 128 * 56 * 56
    assert std["input_shape"] == [1, 64, 56, 56] and std["output_shape"] == [1, 128, 56, 56]
    # separable = 3*3*64*56*56 + 64*128*56*56 = 1,806,336 + 25,690,112
    assert data["separable"]["macs"] == 1_806_336 + 25_690_112
    assert data["ratio"]["closed_form"] == pytest.approx(1 / 128 + 1 / 9)
    assert data["ratio"]["macs"] == pytest.approx(data["separable"]["macs"] / std["macs"])


def test_csv_and_markdown():
    csv_out = run("layer", "--k", "3", "--cin", "8", "--cout", "16", "--size", "8", "-f", "csv").stdout.splitlines()
    assert csv_out[0].startswith("name,kind,input_shape,output_shape,params")
    assert csv_out[1].startswith("standard,standard,1x8x8x8,1x16x8x8,1152,")  # 3*3*8*16 = 1,152
    assert len(csv_out) == 5  # standard, depthwise, pointwise, separable total
    md = run("layer", "--k", "3", "--cin", "8", "--cout", "16", "--size", "8", "-f", "markdown").stdout
    assert "| layer | output | params | MACs |" in md and "|:---|:---|---:|" in md


def test_output_file_is_written_whole(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    result = run("layer", "--k", "3", "--cin", "8", "--cout", "16", "-f", "json", "-o", str(target))
    assert result.returncode == 0 and result.stdout == ""
    assert json.loads(target.read_text())["rows"][0]["kind"] == "standard"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_output_that_cannot_be_written_keeps_nothing_half_done(tmp_path):
    result = run("layer", "--k", "3", "--cin", "8", "--cout", "16", "-o", str(tmp_path / "missing" / "x.txt"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"dscalc: error: --output: directory {tmp_path / 'missing'} does not exist"


BAD_INPUT = [
    (["--k", "3", "--cin", "0", "--cout", "128"], "--cin: must be positive, got 0"),
    (["--k", "3", "--cin", "-4", "--cout", "128"], "--cin: must be positive, got -4"),
    (["--k", "3", "--cin", "64", "--cout", "128", "--size", "0"], "--size: must be positive, got 0"),
    (["--k", "3", "--cin", "30", "--cout", "8", "--groups", "4"],
     "--cin: 30 input channels are not divisible by groups=4"),
    (["--k", "3", "--cin", "32", "--cout", "30", "--groups", "4"],
     "--cout: 30 output channels are not divisible by groups=4"),
    (["--k", "7", "--cin", "3", "--cout", "8", "--size", "5", "--padding", "valid"],
     "--k: kernel 7 is larger than the padded input 5 (5 + padding 0)"),
    (["--k", "3", "--cin", "3", "--cout", "8", "--size", "5", "--padding", "0", "--dilation", "3"],
     "--k: kernel 3 (dilated extent 7) is larger than the padded input 5 (5 + padding 0)"),
    (["--k", "3", "--cin", "3", "--cout", "8", "--stride", "0"], "--stride: must be positive, got 0"),
    (["--k", "abc", "--cin", "3", "--cout", "8"],
     "--k: expected an integer or one per dimension like 3x5, got 'abc'"),
    (["--k", "3", "--cin", "3", "--cout", "8", "--padding", "lots"],
     "--padding: expected same, valid, N or one per dimension like 1x2, got 'lots'"),
    (["--k", "3", "--cin", "abc", "--cout", "8"], "Invalid value for '--cin'"),
    (["--k", "3", "--cin", "3", "--cout", "8", "--kind", "fancy"], "Invalid value for '--kind'"),
    (["--k", "3", "--cout", "8"], "Missing option '--cin'."),
    (["--cin", "3", "--cout", "8"], "--k: is required for --kind standard"),
    (["--k", "3", "--cin", "3", "--cout", "8", "--dims", "4"], "--dims: must be 1, 2 or 3, got 4"),
    (["--k", "3x3x3", "--cin", "3", "--cout", "8", "--size", "5x5"],
     "--k: expected 1 or 2 values for a 2D layer, got 3"),
    (["--k", "3", "--cin", "4", "--kind", "depthwise", "--cout", "5"],
     "--cout: a depthwise conv has cin x depth-multiplier = 4 outputs, got 5"),
    (["--k", "4", "--cin", "8", "--cout", "8", "--size", "2", "--kind", "transposed", "--padding", "4"],
     "--padding: crops away the whole output (size -3x-3 would be left)"),
    (["--k", "3", "--cin", "8", "--cout", "8", "--kind", "transposed", "--stride", "2", "--padding", "1",
      "--output-padding", "2"],
     "--output-padding: 2 must be smaller than stride or dilation (PyTorch's rule)"),
    (["--k", "3", "--cin", "8", "--cout", "8", "--kind", "transposed", "--stride", "2", "--output-padding", "1"],
     "--output-padding: cannot be combined with padding 'same' (the default), which already makes the output "
     "exactly input x stride; give an explicit padding (e.g. 1) to use it"),
    (["--k", "3", "--cin", "8", "--cout", "8", "--output-padding", "1"],
     "--output-padding: only applies to a transposed convolution"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_in_process(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["layer", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dscalc: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_input_through_console_script():
    for args, message in BAD_INPUT[:3] + BAD_INPUT[10:13]:
        result = run("layer", *args)
        assert result.returncode == 2
        assert message in result.stderr and result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_clirunner_help_and_kinds():
    runner = CliRunner()
    result = runner.invoke(app, ["layer", "--help"])
    assert result.exit_code == 0 and "--depth-multiplier" in result.output.replace("\n", "")
    # pointwise 96 -> 24 on 56x56: 96*24*3136 = 7,225,344 MACs
    result = runner.invoke(app, ["layer", "--kind", "pointwise", "--cin", "96", "--cout", "24"])
    assert result.exit_code == 0 and "7,225,344" in result.output
    # grouped transposed trap from issue #2: 6,422,528 MACs
    result = runner.invoke(app, ["layer", "--kind", "transposed", "--k", "4", "--cin", "64", "--cout", "32",
                                 "--size", "28", "--stride", "2", "--groups", "4", "--padding", "1", "-f", "json"])
    assert result.exit_code == 0
    row = json.loads(result.output)["rows"][0]
    assert (row["kind"], row["macs"], row["output_shape"]) == ("transposed", 6_422_528, [1, 32, 56, 56])


def test_layer_never_imports_torch():
    code = "import sys; from dscalc.cli import main\ntry:\n    main(['layer','--k','3','--cin','8','--cout','8'])\n" \
           "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch was imported'\n" \
           "assert 'fvcore' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "dscalc", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("dscalc ")


def test_root_help_lists_every_command(capsys):
    # main() builds only the command being run; help must still show them all
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("layer", "network", "profile", "device", "compare", "sweep"):
        assert re.search(rf"^\W*{command}\s", out, flags=re.M), command  # in the rich Commands panel


def test_readme_layer_example_is_current():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    marker = "    $ dscalc layer --k 3 --cin 64 --cout 128 --size 112\n\n```\n"
    shown = readme[readme.index(marker) + len(marker):].split("```")[0]
    result = run("layer", "--k", "3", "--cin", "64", "--cout", "128", "--size", "112")
    assert [line.rstrip() for line in result.stdout.splitlines()] == shown.rstrip("\n").splitlines()
    assert "924,844,032" in shown  # 3*3*64*128*112*112, worked by hand


@pytest.mark.parametrize("args", [["network", "mobilenet_v1"], ["layer", "--k", "3", "--cin", "64", "--cout", "128"]],
                         ids=["network", "layer"])
def test_an_ascii_terminal_gets_an_ascii_table_that_still_fits(args):
    # a stdout that cannot carry box rules or superscripts (LC_ALL=POSIX on an old system, PYTHONIOENCODING=ascii):
    # no UnicodeEncodeError, ASCII throughout, 80 columns, and the counts of the UTF-8 table
    r = subprocess.run([SCRIPT, *args], capture_output=True, env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1",
                                                                 "PYTHONIOENCODING": "ascii"})
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode("ascii")  # raises on any non-ASCII byte
    assert max(len(line) for line in text.splitlines()) <= 80 and " ---" in text
    utf8 = run_script(*args)
    assert re.findall(r"\d{1,3}(?:,\d{3})+", utf8.stdout) == re.findall(r"\d{1,3}(?:,\d{3})+", text)


def test_an_ascii_terminal_writes_a_product_with_a_star():
    # the middle dot of a product becomes '*', never '.', which would read as a decimal point: the Conv2D reference
    # example's first term is input 0.1 times kernel 1 (issue 27), and the closed form 3^2*64*... (README)
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "PYTHONIOENCODING": "ascii"}
    explain = subprocess.run([SCRIPT, "explain", "--k", "3", "--cin", "2", "--cout", "3", "--size", "3"],
                             capture_output=True, env=env)
    assert explain.returncode == 0, explain.stderr
    assert "= 0.1*1 + 0.3*7 + " in explain.stdout.decode("ascii")
    layer = subprocess.run([SCRIPT, "layer", "--k", "3", "--cin", "64", "--cout", "128"], capture_output=True, env=env)
    assert "3^2*64*128*56^2 = 231,211,008 MACs" in layer.stdout.decode("ascii")  # 9*64*128*3136, by hand

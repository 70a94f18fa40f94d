"""The boundary, case by case (each reproducer of the fuzz campaign's report): valid commands that crashed, options
checked with one line and exit 2, the user's code failing as the model's failure (exit 1), Ctrl-C (exit 130),
--output that writes through what is already there, and hostile specs refused before they cost anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import SCRIPT, run_in_process
from reference_models import xception
from torch_oracles import torch_macs

dscalc = run_in_process


def one_line(r, code: int, text: str) -> None:
    assert r.code == code, (r.code, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dscalc: error: ") and "Traceback" not in r.stderr
    assert text in r.stderr, r.stderr


# ------------------------------------------------------------------------------------ valid commands that crashed

def test_xception_as_separable():
    # Keras Xception's only standard convs with k > 1 are the entry flow's two 3x3 (valid padding):
    #   conv1 3->32 s2 on 299 -> 149: 3*32*9*149² = 19,181,664; as dw + pw 3*9*149² + 3*32*149² = 599,427 + 2,131,296
    #   conv2 32->64 on 149 -> 147: 32*64*9*147² = 398,297,088; as dw + pw 32*9*147² + 32*64*147² = 6,223,392 +
    #   44,255,232 (the 1x1 shortcuts have no counterpart; the rest is separable already)
    r = dscalc("network", "xception", "--as", "separable", "-f", "json")
    assert r.code == 0, r.stderr
    original, _ = torch_macs(xception().eval(), torch.zeros(1, 3, 299, 299))
    expected = original - 19_181_664 - 398_297_088 + 599_427 + 2_131_296 + 6_223_392 + 44_255_232
    assert json.loads(r.stdout)["totals"]["macs"] == expected


def test_compare_mobilenet_v2_at_alpha_2_and_resolution_1():
    tv = pytest.importorskip("torchvision")
    r = dscalc("compare", "mobilenet_v2", "--alpha", "2", "--resolution", "1", "-f", "json")
    assert r.code == 0, r.stderr
    macs, _ = torch_macs(tv.models.mobilenet_v2(width_mult=2.0).eval(), torch.zeros(1, 3, 1, 1))
    assert json.loads(r.stdout)["original"]["macs"] == macs


# ---------------------------------------------------------------------------------- options, one line, exit 2

@pytest.mark.parametrize("args,text", [
    (["compare", "--cin", "192", "--cout", "218", "--k", "4x4", "--dilation", "2", "--device", "gpu"],
     "--device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (["device", "--threads", "-1"], "--threads: must be between 1 and"),
    (["device", "--threads", str(10**30)], "--threads: must be between 1 and"),
    (["network", "xception", "--resolution", str(10**80)], "--resolution: must be at most 2,147,483,647, got 1e+80"),
    (["profile", "{model}", "--input", f"1x3x{10**30}x{10**30}"], "--input: every dimension must be at most"),
    (["layer", "--k", "3", "--cin", "64", "--cout", "32", "--kind", "transposed", "--size", "28", "--stride", "2",
      "--output-padding", "1"], "--output-padding: cannot be combined with padding 'same' (the default)"),
    (["layer", "--k", "3", "--cin", "8", "--cout", "8", "--stride", "2x2x2"],
     "--stride: has 3 values but the layer is 2D (from --size and --k); give --dims 3 or a 3D --size"),
    (["compare", "mobilenet_v1", "--cin", "3"], "--cin: does not apply to a network"),
    (["compare", "--k", "3", "--cin", "8", "--cout", "8", "--input", "1x8x8x8"],
     "--input: applies to a model TARGET, not to a layer"),
    (["profile", "{fake_bin}", "-i", "1x3x8x8"], "is not a supported model format (supported: "),
    (["profile", "{fake_onnx}", "-i", "1x3x8x8"], "fake.onnx is not a valid ONNX model: "),
    (["sweep", "--cin", "1:1000000000"], "--cin: expands to more than 1000 values"),
    (["network", "mobilenet_v1", "--alpha", "1e300"], "--alpha: must be at most 1e+06"),
])
def test_bad_options(args, text, tmp_path):
    (tmp_path / "m.py").write_text("from torch import nn\n\ndef net():\n    return nn.Conv2d(3, 4, 3)\n")
    (tmp_path / "fake.onnx").write_bytes(b"not onnx")
    (tmp_path / "fake.bin").write_bytes(b"not a model")  # (ONNX is supported now: a .bin is not)
    args = [a.format(model=tmp_path / "m.py", fake_onnx=tmp_path / "fake.onnx", fake_bin=tmp_path / "fake.bin")
            for a in args]
    one_line(dscalc(*args), 2, text)


def test_no_arguments_prints_help_and_exits_0():
    r = dscalc()
    assert r.code == 0 and "Usage: dscalc" in r.stdout and r.stderr == ""


def test_a_truncated_export_says_one_line(tmp_path):
    (tmp_path / "t.pt2").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    r = subprocess.run([SCRIPT, "profile", str(tmp_path / "t.pt2"), "-i", "1x3x8x8"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "t.pt2" in r.stderr, r.stderr


# ---------------------------------------------------------------------------------------- the user's code

@pytest.mark.parametrize("source,text", [
    ("import sys\nsys.exit(3)\n", "importing {path} called sys.exit(3)"),
    ("import sys\nfrom torch import nn\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        sys.exit(4)\n", "building {path}:M called sys.exit(4)"),
    ("import sys\nfrom torch import nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n",
     "the model's forward in M.forward called sys.exit(0)"),
    ("from torch import nn\n\nclass M(nn.Module):\n    def forward(self, x):\n        raise KeyboardInterrupt\n",
     "the model's forward in M.forward raised KeyboardInterrupt"),
])
def test_user_code_that_exits_is_the_models_failure(tmp_path, source, text):
    path = tmp_path / "m.py"
    path.write_text(source)
    out = tmp_path / "out.json"
    r = dscalc("profile", str(path), "-i", "1x3x8x8", "-f", "json", "-o", str(out))
    one_line(r, 1, text.format(path=path))
    assert not out.exists()  # nothing written


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    # a model whose construction takes long: the user presses Ctrl-C while dscalc waits for it
    path = tmp_path / "slow.py"
    path.write_text("import time\nfrom torch import nn\n\ndef net():\n    time.sleep(60)\n"
                    "    return nn.Conv2d(3, 3, 1)\n")
    proc = subprocess.Popen([SCRIPT, "profile", str(path), "-i", "1x3x8x8"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # torch's import, then the sleep in the model's constructor
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "dscalc: error: interrupted\n", (proc.returncode, err)


# ---------------------------------------------------------------------------------------------- --output

LAYER = ["layer", "--k", "3", "--cin", "8", "--cout", "16", "-f", "json"]


def test_output_writes_through_a_device_node():
    r = dscalc(*LAYER, "-o", "/dev/null")
    assert r.code == 0 and os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_output_writes_through_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []

    def read() -> None:
        with open(fifo) as f:
            got.append(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    r = dscalc(*LAYER, "-o", str(fifo))
    reader.join(timeout=30)
    assert r.code == 0 and json.loads(got[0])["rows"][0]["macs"] == 9 * 8 * 16 * 56 * 56
    assert fifo.is_fifo()


def test_output_through_a_symlink_writes_its_target(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    assert dscalc(*LAYER, "-o", str(link)).code == 0
    assert link.is_symlink() and json.loads(target.read_text())["command"] == "layer"


def test_a_failed_write_leaves_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "keep.json"
    target.write_text("precious")

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    one_line(dscalc(*LAYER, "-o", str(target)), 1, "No space left on device")
    assert target.read_text() == "precious" and [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_a_full_device_is_one_line_exit_1():
    one_line(dscalc(*LAYER, "-o", "/dev/full"), 1, "--output: cannot write /dev/full: No space left on device")


def test_output_dash_is_stdout():
    r = dscalc(*LAYER, "-o", "-")
    assert r.code == 0 and json.loads(r.stdout)["command"] == "layer"


# ------------------------------------------------------------------------------------------ hostile specs

def test_an_oversized_spec_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("input: [3, 8, 8]\nlayers: [relu]\n# " + "x" * 50_000_000 + "\n")
    start = time.perf_counter()
    one_line(dscalc("network", str(path)), 2, "is larger than a spec may be (1,000,000 bytes)")
    assert time.perf_counter() - start < 60  # (not a speed test: PyYAML takes minutes to parse 50 MB)


@pytest.mark.parametrize("text", [
    "input: [3, 8, 8]\nlayers:\n  - repeat: {times: 1000000000, layers: [relu]}\n",
    "input: [3, 8, 8]\nlayers:\n  - repeat:\n      times: 1000\n      layers:\n        - repeat: {times: 1000, "
    "layers: [relu]}\n",
    # a "billion laughs": each block's layers are 10 aliases of the previous block's: 10**7 layers in 8 lines
    "input: [3, 8, 8]\nlayers:\n  - block: {layers: &a0 [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]}\n"
    + "".join(f"  - block: {{layers: &a{i} [" + ", ".join(f"{{block: {{layers: *a{i - 1}}}}}" for _ in range(10))
              + "]}\n" for i in range(1, 7)),
])
def test_specs_that_expand_too_far_are_refused(tmp_path, text):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    one_line(dscalc("network", str(path)), 2, "layers (repeats and YAML aliases included)")


def test_a_spec_with_odd_values_is_bad_input(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3, padding: {a: 1}}\n")
    one_line(dscalc("network", str(path)), 2, "padding")
    path.write_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: abc, k: 3}\n")
    one_line(dscalc("network", str(path)), 2, "'filters' must be a positive integer, got 'abc'")


def test_the_console_script_never_shows_a_traceback_for_an_internal_error(tmp_path):
    # an unexpected exception is one line pointing at DSCALC_DEBUG (which shows the traceback)
    code = ("import sys\nfrom dscalc import cli\nfrom dscalc.report import layer\n"
            "def boom(*a, **k):\n    raise ZeroDivisionError('boom')\nlayer.draw = boom\n"
            "cli.main(['layer', '--k', '3', '--cin', '8', '--cout', '8'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == ("dscalc: error: internal error: ZeroDivisionError: boom (set DSCALC_DEBUG=1 for the "
                        "traceback)\n")

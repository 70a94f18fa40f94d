"""The layering contract (import-linter, configured in pyproject.toml) holds, and would catch a wrong import;
the light paths stay light: `dscalc layer` imports no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT, str(root / "pyproject.toml"), "--no-cache"], capture_output=True,
                          text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)})


def test_layering_contract_is_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 3 kept, 0 broken." in r.stdout


def test_a_wrong_import_breaks_the_contract(tmp_path):
    # a copy of the package where the torch-free engine reaches up into the report layer
    shutil.copytree(ROOT / "dscalc", tmp_path / "dscalc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    formulas = tmp_path / "dscalc" / "cost" / "formulas.py"
    formulas.write_text(formulas.read_text() + "\nimport dscalc.report.fmt  # a deliberately wrong import\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    assert "Contracts: 1 kept, 2 broken." in r.stdout  # the layers, and (cost <-> report) a cycle
    assert "dscalc.cost is not allowed to import dscalc.report" in r.stdout
    assert "dscalc.cost.formulas -> dscalc.report.fmt" in r.stdout


def test_torch_in_the_report_layer_breaks_its_contract(tmp_path):
    # report only draws: a torch import there (to build a module, to time one) is what the contract forbids
    shutil.copytree(ROOT / "dscalc", tmp_path / "dscalc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    fmt = tmp_path / "dscalc" / "report" / "fmt.py"
    fmt.write_text(fmt.read_text() + "\n\ndef probe():\n    import torch  # a deliberately wrong import\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    assert "Contracts: 2 kept, 1 broken." in r.stdout
    assert "dscalc.report.fmt -> torch" in r.stdout


def test_a_study_reaching_into_the_report_layer_breaks_the_contract(tmp_path):
    # the layer between: a study function never draws (only a study's display methods, declared in pyproject)
    shutil.copytree(ROOT / "dscalc", tmp_path / "dscalc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    layer = tmp_path / "dscalc" / "study" / "layer.py"
    layer.write_text(layer.read_text() + "\nimport dscalc.report.layer  # a deliberately wrong import\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    assert "dscalc.study is not allowed to import dscalc.report" in r.stdout


def test_layer_never_imports_torch():
    code = ("import sys\nfrom dscalc.cli import main\ntry:\n    main(['layer','--k','3','--cin','8','--cout','8'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'fvcore' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_network_without_time_never_imports_torch():
    code = ("import sys\nfrom dscalc.cli import main\ntry:\n    main(['network','mobilenet_v2','-f','json'])\n"
            "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- one rule for "can become separable"

RESNEXT_SPEC = """\
name: resnext_block
input: [64, 56, 56]
defaults: {bias: false}
layers:
  - pointwise: {filters: 128}
  - bn
  - relu
  - conv: {filters: 128, k: 3, groups: 32, name: grouped}
  - bn
  - relu
  - pointwise: {filters: 256}
"""

RESNEXT_TORCH = """\
from torch import nn

def block():
    return nn.Sequential(nn.Conv2d(64, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.Conv2d(128, 128, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.Conv2d(128, 256, 1, bias=False))
"""

# By hand, on 56x56 (3,136 positions): the grouped 3x3 conv has 128*(128/32)*9 = 4,608 weights and
# 4,608*3,136 = 14,450,688 MACs; its separable pair is dw 128*9*3,136 = 3,612,672 + pw 128*128*3,136 =
# 51,380,224 = 54,992,896 MACs (3.8x more: g*(1/N + 1/9) = 32*(1/128 + 1/9) = 3.806). The 1x1 convs have no
# counterpart: 64*128*3,136 = 25,690,112 and 128*256*3,136 = 102,760,448; the block 142,901,248 MACs.
GROUPED, PAIR, BLOCK = 14_450_688, 3_612_672 + 51_380_224, 25_690_112 + 14_450_688 + 102_760_448


def test_layer_network_profile_and_compare_agree_on_a_resnext_block(cli, tmp_path, fixed_ceilings):
    import json

    assert PAIR == 54_992_896 and BLOCK == 142_901_248
    layer = json.loads(cli("layer", "--k", "3", "--cin", "128", "--cout", "128", "--groups", "32", "--size", "56",
                           "-f", "json").stdout)
    assert layer["rows"][0]["macs"] == GROUPED and layer["separable"]["macs"] == PAIR

    spec = tmp_path / "resnext.yaml"
    spec.write_text(RESNEXT_SPEC)
    net = json.loads(cli("network", str(spec), "--as", "separable", "-f", "json").stdout)
    pair_rows = [r for r in net["rows"] if r["name"].startswith("grouped.")]
    assert [r["kind"] for r in pair_rows] == ["depthwise", "pointwise"]
    assert sum(r["macs"] for r in pair_rows) == PAIR and net["totals"]["macs"] == BLOCK - GROUPED + PAIR

    model = tmp_path / "resnext.py"
    model.write_text(RESNEXT_TORCH)
    prof = json.loads(cli("profile", str(model), "-i", "1x64x56x56", "-f", "json").stdout)
    grouped = next(r for r in prof["rows"] if r["kind"] == "grouped")
    assert grouped["macs"] == GROUPED and grouped["separable"]["macs"] == PAIR
    assert prof["totals"]["macs"] == BLOCK and prof["totals"]["separable_macs"] == BLOCK - GROUPED + PAIR

    comp = json.loads(cli("compare", str(model), "-i", "1x64x56x56", "-f", "json").stdout)
    assert comp["replaced"] == 1
    assert (comp["original"]["macs"], comp["variant"]["macs"]) == (BLOCK, BLOCK - GROUPED + PAIR)

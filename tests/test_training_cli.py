"""`--training` as a user runs it: on every command it applies to, in every format, against the schema; the README's
totals (derived from published figures by hand); bad input - one line, exit 2; and `layer`/`network --training`
never importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from test_golden import assert_no_number_cut
from test_schema import BASE, SCHEMA

from dscalc.report.render import Format, render

LAYER = ["--k", "3", "--cin", "8", "--cout", "16", "--size", "8"]
COMMANDS = {
    "layer": ["layer", *LAYER, "--training"],
    "layer grouped transposed": ["layer", "--kind", "transposed", "--k", "4", "--cin", "8", "--cout", "4", "--stride",
                                 "2", "--padding", "1", "--groups", "4", "--training"],
    "layer linear": ["layer", "--kind", "linear", "--cin", "8", "--cout", "4", "--training", "--optimizer", "sgd"],
    "layer --memory-limit": ["layer", *LAYER, "--memory-limit", "1MiB"],
    "layer --time": ["layer", *LAYER, "--training", "--time"],
    "network": ["network", "cifar_separable", "--training", "--memory-limit", "1GiB"],
    "network --time": ["network", "{spec}", "--training", "--time"],
    "profile": ["profile", "{model}", "-i", "2x16x8x8", "--training", "--optimizer", "momentum"],
    "profile --time": ["profile", "{model}", "-i", "1x16x8x8", "--training", "--time"],
    "compare layer": ["compare", *LAYER, "--training"],
    "compare network": ["compare", "cifar_conv", "--training"],
    "compare model": ["compare", "{model}", "-i", "1x16x8x8", "--training"],
    "sweep": ["sweep", "--cin", "8,16", "--size", "8", "--no-time", "--training"],
    "sweep measured": ["sweep", "--cin", "8", "--size", "8", "--training"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_training_command_matches_the_schema(name, cli, model_files, fixed_ceilings):
    args = [a.format(**model_files) for a in COMMANDS[name]]
    r = cli(*args, "-f", "json")
    assert r.code == 0, r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    training = data["training"]
    assert training["optimizer"] in ("sgd", "momentum", "adam", "adamw")
    if "--time" in args and name != "sweep measured":
        assert training["timing"]["rows"] or training["timing"].get("end_to_end"), name
    csv = cli(*args, "-f", "csv")
    header = csv.stdout.splitlines()[0].split(",")
    assert set(header) >= BASE
    assert any(h.startswith(("training.", "training_")) for h in header), header
    assert "{" not in "\n".join(csv.stdout.splitlines()[1:])


def test_training_leaves_the_counts_unchanged(cli):
    plain = json.loads(cli("network", "mobilenet_v2", "-f", "json").stdout)
    trained = json.loads(cli("network", "mobilenet_v2", "--training", "-f", "json").stdout)
    assert {k: v for k, v in trained.items() if k != "training"} == plain


def test_layer_training_table(cli):
    """The issue's depthwise conv: 3^2 * 64 * 56^2 = 1,806,336 MACs forward and in each gradient; FlopCounterMode
    reports 64 x 1,806,336 = 115,605,504 for its weight gradient."""
    r = cli("layer", "--kind", "depthwise", "--k", "3", "--cin", "64", "--size", "56", "--training", columns=100)
    assert r.code == 0, r.stderr
    assert "1,806,336" in r.stdout and "5,419,008" in r.stdout  # 3 x 1,806,336 training MACs
    assert "115,605,504" in r.stdout and "it does not divide the weight gradient by groups" in r.stdout
    assert "a standalone layer is taken as a layer inside a network: both gradients" in r.stdout


def test_network_mobilenet_v1_totals(cli):
    """The paper's 568,740,352 MACs forward and in the weight gradient; the first conv (3->32, 3x3/s2 to 112^2:
    3*32*9*112^2 = 10,838,016) has no input gradient: 568,740,352 - 10,838,016 = 557,902,336; training
    568,740,352 * 2 + 557,902,336 = 1,695,383,040."""
    r = cli("network", "mobilenet_v1", "--training", columns=100)
    assert r.code == 0, r.stderr
    for figure in ("568,740,352", "557,902,336", "1,695,383,040", "3,390,766,080"):
        assert figure in r.stdout, figure


def test_profile_mobilenet_v2_totals(cli):
    """torchvision's published 300,774,272 MACs; no input gradient for the first conv (3->32, 3x3/s2 to 112^2:
    10,838,016): grad-input 289,936,256; training 2 x 300,774,272 + 289,936,256 = 891,484,800."""
    r = cli("profile", "torchvision:mobilenet_v2", "-i", "1x3x224x224", "--training", "-f", "json")
    assert r.code == 0, r.stderr
    tot = json.loads(r.stdout)["training"]["totals"]
    assert (tot["forward_macs"], tot["grad_input_macs"], tot["grad_weight_macs"], tot["training_macs"]) \
        == (300_774_272, 289_936_256, 300_774_272, 891_484_800)


@pytest.mark.parametrize("args, message", [
    (["layer", *LAYER, "--training", "--optimizer", "rmsprop"],
     "--optimizer: unknown optimizer 'rmsprop'; choose one of sgd, momentum, adam, adamw"),
    (["layer", *LAYER, "--optimizer", "sgd"], "--optimizer: applies with --training"),
    (["layer", *LAYER, "--memory-limit", "1KiB"], "--memory-limit: no batch fits in 1,024 bytes"),
    (["layer", *LAYER, "--memory-limit", "lots"], "--memory-limit: expected a size like 16GiB"),
    (["layer", *LAYER, "--training", "--dtype", "int8"], "--dtype: training needs a floating dtype"),
    (["network", "--list", "--training"], "--list: lists the built-in networks"),
    (["network", "mobilenet_v2", "--memory-limit", "1MiB"], "--memory-limit: no batch fits"),
    (["device", "--training"], "No such option: --training"),
])
def test_bad_training_input_is_one_line_exit_2(cli, args, message):
    r = cli(*args)
    assert r.code == 2, (r.code, r.stderr)
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert r.stdout == ""


def test_training_refuses_graph_formats_and_frozen_models(cli, tmp_path):
    import torch
    from torch import nn

    torch.jit.save(torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3))), tmp_path / "m.pt")
    r = cli("profile", str(tmp_path / "m.pt"), "-i", "1x3x8x8", "--training")
    assert r.code == 2 and r.stderr.count("\n") == 1
    assert "--training: --training needs a PyTorch nn.Module built from code" in r.stderr
    (tmp_path / "frozen.py").write_text("from torch import nn\n\ndef net():\n    m = nn.Conv2d(3, 4, 3)\n"
                                        "    m.requires_grad_(False)\n    return m\n")
    r = cli("profile", str(tmp_path / "frozen.py"), "-i", "1x3x8x8", "--training")
    assert r.code == 2 and "nothing to train" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [["layer", "--k", "3", "--cin", "8", "--cout", "8", "--training"],
                                  ["network", "mobilenet_v2", "--training", "-f", "json"]])
def test_layer_and_network_training_never_import_torch(args):
    code = (f"import sys\nfrom dscalc.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _report(*args: str):
    """The Report of a `--training` layer/network command, built as the CLI builds it."""
    from dscalc.cost.spec import LayerSpec
    from dscalc.report.draw import draw
    from dscalc.study import layer, network
    from dscalc.study.options import TrainingOptions

    if args[0] == "layer":
        spec = LayerSpec.from_options(cin=64, cout=128, k="3", size="56")
        return draw(layer.study(spec, None, train=TrainingOptions("adam", 16 * 1024**3)))
    return draw(network.study("cifar_separable", train=TrainingOptions("sgd")))


@pytest.mark.parametrize("what, figures", [
    # 3^2*64*128*56^2 = 231,211,008 per pass; training 3 x = 693,633,024; separable 9*64*3,136 + 64*128*3,136 =
    # 1,806,336 + 25,690,112 = 27,496,448, training 3 x = 82,489,344
    ("layer", ("231,211,008", "693,633,024", "27,496,448", "82,489,344")),
    ("network", ("grad-input MACs", "saved activations")),
])
def test_training_tables_never_cut_a_number(what, figures, golden):
    report = _report(what)
    for width in (60, 80, 100, 200):
        text = render(report, Format.table, width=width)
        assert max(len(line) for line in text.splitlines()) <= width
        assert_no_number_cut(report, text)
        for figure in figures:
            assert figure in text
        golden(f"training_{what}_{width}.txt", text)


# ------------------------------------------------------------------------------------ the README's blocks

README_BLOCKS = [
    # the paper's 568,740,352 MACs; grad-input without the first conv's 10,838,016 (see test_network_mobilenet_v1)
    ("`dscalc network mobilenet_v1 --training` (after the per-layer tables):\n\n```\n",
     ["network", "mobilenet_v1", "--training"], ["568,740,352", "557,902,336", "1,695,383,040"]),
    # torchvision's published 300,774,272 MACs (see test_profile_mobilenet_v2_totals)
    ("`dscalc profile torchvision:mobilenet_v2 --input 1x3x224x224 --training` (after the per-module tables):"
     "\n\n```\n", ["profile", "torchvision:mobilenet_v2", "--input", "1x3x224x224", "--training"],
     ["300,774,272", "289,936,256", "891,484,800"]),
]


def _training_part(out: str) -> str:
    """From the 'training step' title through the memory table (its notes left out)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "training step: forward + backward")
    memory = next(i for i, line in enumerate(lines) if line.strip().startswith("training memory:"))
    end = next(i for i in range(memory + 1, len(lines)) if lines[i] and not lines[i].startswith(" "))
    return "\n".join(lines[start:end]).rstrip() + "\n"


@pytest.mark.parametrize("marker, args, figures", README_BLOCKS, ids=["network", "profile"])
def test_readme_training_blocks_are_current(marker, args, figures, cli, request):
    from pathlib import Path

    readme_path = Path(__file__).parents[1] / "README.md"
    r = cli(*args)
    assert r.code == 0, r.stderr
    out = _training_part(r.stdout)
    readme = readme_path.read_text()
    begin = readme.index(marker) + len(marker)
    end = readme.index("```", begin)
    if request.config.getoption("--overwrite"):
        readme_path.write_text(readme[:begin] + out + readme[end:])
        return
    shown = readme[begin:end]
    assert [line.rstrip() for line in out.splitlines()] == [line.rstrip() for line in shown.splitlines()]
    for figure in figures:
        assert figure in shown

"""The Python API: `dscalc.layer/network/profile/compare/sweep/device/count` are the CLI's studies. Each result's
`to_dict()` is the CLI's `--format json` for the same input (the same study drawn the same way), its HTML is a
real table, `count()` finds what `profile()` finds, and the caller's model is left as it was."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

import dscalc

MODEL = textwrap.dedent("""
    from torch import nn

    def net():
        return nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1))
""")


def _json(cli, *args: str) -> dict:
    r = cli(*args, "--format", "json")
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


# (CLI arguments, the same as an API call)
CASES = {
    "layer": (["layer", "--cin", "64", "--cout", "128", "--k", "3", "--size", "112"],
              lambda: dscalc.layer(k=3, cin=64, cout=128, size=112)),
    "layer_predict": (["layer", "--cin", "32", "--cout", "64", "--k", "3x5", "--size", "28x56", "--stride", "2",
                       "--predict"],
                      lambda: dscalc.layer(cin=32, cout=64, k=(3, 5), size=(28, 56), stride=2, predict=True)),
    "layer_training": (["layer", "--cin", "8", "--cout", "16", "--k", "3", "--size", "8", "--training"],
                       lambda: dscalc.layer(cin=8, cout=16, k=3, size=8, training=True)),
    "network": (["network", "mobilenet_v1", "--alpha", "0.5"], lambda: dscalc.network("mobilenet_v1", alpha=0.5)),
    "network_list": (["network", "--list"], lambda: dscalc.network(list_=True)),
    "network_training": (["network", "cifar_conv", "--training", "--optimizer", "sgd"],
                         lambda: dscalc.network("cifar_conv", training=True, optimizer="sgd")),
    "profile": (["profile", "small.py", "-i", "1x16x8x8", "--depth", "1"],
                lambda: dscalc.profile("small.py", "1x16x8x8", depth=1)),
    "compare_layer": (["compare", "--cin", "64", "--cout", "128", "--k", "3", "--size", "56"],
                      lambda: dscalc.compare(cin=64, cout=128, k=3, size=56)),
    "compare_network": (["compare", "cifar_conv"], lambda: dscalc.compare("cifar_conv")),
    "compare_model": (["compare", "small.py", "-i", "1x16x8x8"], lambda: dscalc.compare("small.py", input="1x16x8x8")),
    "sweep": (["sweep", "--cin", "16,32", "--size", "8", "--no-time", "--threads", "1"],
              lambda: dscalc.sweep(cin="16,32", size=8, time=False, threads=1)),
    "device": (["device", "--threads", "1"], lambda: dscalc.device(threads=1)),
    "explain": (["explain", "--kind", "separable", "--cin", "1", "--cout", "2", "--k", "3", "--size", "3",
                 "--cell", "1,0,0"],
                lambda: dscalc.explain(kind="separable", cin=1, cout=2, k=3, size=3, cell="1,0,0")),
    "search": (["search", "cifar_modules", "--top", "5"], lambda: dscalc.search("cifar_modules", top=5)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_to_dict_is_the_cli_json(name, cli, fixed_ceilings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.py").write_text(MODEL)
    args, call = CASES[name]
    expected, got = _json(cli, *args), call().to_dict()
    for doc in (expected, got):
        doc.pop("age_s", None)  # the device cache's age: seconds since it was measured, read at each call
    assert got == expected


def test_layer_on_the_readme_example():
    # MobileNets paper, Table 3: 512->512, 3x3 at 14x14: 462,422,016 MACs / 2,359,296 params; separable
    # 52,283,392 / 266,752
    s = dscalc.layer(k=3, cin=512, cout=512, size=14)
    assert (s.totals.macs, s.totals.params, s.totals.separable_macs) == (462_422_016, 2_359_296, 52_283_392)
    assert [(r.name, r.kind) for r in s.rows] == [("standard", "standard"), ("depthwise", "depthwise"),
                                                  ("pointwise", "pointwise")]
    assert s.comparison.params == 266_752
    assert s.totals.buffers is None and s.totals.int8_macs is None  # every field present, None where it cannot be


def test_network_totals_are_the_papers():
    # the MobileNets paper's width-multiplier figures: 0.5 -> 149,497,088 MACs (DESIGN.md)
    s = dscalc.network("mobilenet_v1", alpha=0.5)
    assert s.totals.macs == 149_497_088
    assert sum(r.macs for r in s.rows) == 149_497_088


def test_bad_arguments_raise_badinput_with_the_cli_message(cli, capsys):
    r = cli("layer", "--cin", "64", "--cout", "128", "--k", "3", "--groups", "3")
    assert r.code == 2
    with pytest.raises(dscalc.BadInput) as e:
        dscalc.layer(cin=64, cout=128, k=3, groups=3)
    assert f"dscalc: error: {e.value.for_cli()}\n" == r.stderr
    with pytest.raises(dscalc.BadInput, match="runtime"):
        dscalc.layer(cin=8, cout=8, k=3, runtime="eager,onnxruntime")  # --runtime without --time, as on the CLI
    with pytest.raises(dscalc.BadInput, match="unknown runtime"):
        dscalc.layer(cin=8, cout=8, k=3, runtime="tensorrt")
    assert capsys.readouterr() == ("", "")  # the API prints nothing


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tables = 0
        self.cells: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        self.tables += tag == "table"
        self.rows += tag == "tr"

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else ''}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            self.cells.append(data)


def test_html_is_a_table_with_the_totals():
    torchvision = pytest.importorskip("torchvision")
    s = dscalc.profile(torchvision.models.mobilenet_v2(), (1, 3, 224, 224))
    parser = _Tables()
    parser.feed(s._repr_html_())
    parser.close()
    assert not parser.stack  # every tag closed, in order
    assert parser.tables == 4 and parser.rows > 20
    # torchvision's metadata for mobilenet_v2: 300,774,272 MACs (_ops, GMACs) and 3,504,872 params
    assert "300,774,272" in parser.cells and "3,504,872" in parser.cells


def test_rich_draws_the_cli_table(cli):
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    console.print(dscalc.layer(k=3, cin=64, cout=128, size=112))
    assert console.export_text().splitlines()[:6] == cli("layer", "--k", "3", "--cin", "64", "--cout", "128",
                                                         "--size", "112", columns=80).stdout.splitlines()[:6]


def test_to_pandas_groups_by_kind():
    pytest.importorskip("pandas")
    torchvision = pytest.importorskip("torchvision")
    frame = dscalc.profile(torchvision.models.resnet18(), (1, 3, 224, 224)).to_pandas()
    by_kind = frame.groupby("kind")["macs"].sum()
    # resnet18: torchvision's _ops 1.814 GMACs, of which the fc layer 512 x 1000 = 512,000
    assert int(by_kind.sum()) == 1_814_073_344 and int(by_kind["linear"]) == 512_000


def test_to_pandas_without_pandas_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(dscalc.RuntimeFailure, match="pip install pandas"):
        dscalc.layer(k=3, cin=8, cout=8).to_pandas()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_count_equals_profile(name):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.get_model(name).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad(), dscalc.count() as c:
        model(x)
    profiled = dscalc.profile(model, x)
    assert c.result.to_dict() == profiled.to_dict()
    # torchvision's documented parameter counts (weights.meta["num_params"])
    params = {"resnet18": 11_689_512, "mobilenet_v2": 3_504_872, "squeezenet1_1": 1_235_496}[name]
    assert c.result.totals.params == params == sum(p.numel() for p in model.parameters())
    assert not torch.nn.modules.module._global_forward_hooks  # its hooks are gone
    assert not torch.nn.modules.module._global_forward_pre_hooks


def test_count_without_a_model_call_is_bad_input():
    pytest.importorskip("torch")
    with dscalc.count() as c:
        pass
    with pytest.raises(dscalc.BadInput, match="no nn.Module was called"):
        c.result  # noqa: B018


def _state(model):
    import torch

    return ({k: v.clone() if v.device.type != "meta" else (v.shape, v.dtype) for k, v in model.state_dict().items()},
            [m.training for m in model.modules()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
            [p.requires_grad for p in model.parameters()], torch.is_grad_enabled())


def _same(a, b) -> bool:
    import torch

    weights_a, *rest_a = a
    weights_b, *rest_b = b
    return rest_a == rest_b and weights_a.keys() == weights_b.keys() and all(
        torch.equal(weights_a[k], weights_b[k]) if isinstance(weights_a[k], torch.Tensor) else weights_a[k] ==
        weights_b[k] for k in weights_a)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_the_model_is_left_untouched(device, fixed_ceilings):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    with torch.device(device):
        model = torchvision.models.mobilenet_v3_small()
    model.train()  # BatchNorm in training mode: its running statistics would move if it ran for real
    model.features[0][0].register_forward_hook(lambda *a: None)
    before = _state(model)
    studies = [dscalc.profile(model, (2, 3, 64, 64)), dscalc.profile(model, (2, 3, 64, 64), training=True)]
    if device == "cpu":
        studies.append(dscalc.profile(model, (2, 3, 64, 64), time=True, threads=1))
        studies.append(dscalc.compare(model, input=(2, 3, 64, 64)))
    else:
        with pytest.raises(dscalc.BadInput, match="meta device"):
            dscalc.profile(model, (2, 3, 64, 64), time=True)
    assert _same(before, _state(model))
    assert all(s.totals.params == sum(p.numel() for p in model.parameters()) for s in studies[:2])


def test_import_dscalc_is_light():
    code = ("import sys, dscalc\nassert 'torch' not in sys.modules and 'dscalc.study.model' not in sys.modules\n"
            "s = dscalc.layer(k=3, cin=8, cout=8)\nassert 'torch' not in sys.modules, 'layer imported torch'\n"
            "assert 'dscalc.measure.latency' not in sys.modules, 'layer imported the timing machinery'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    pytest.importorskip("torchvision")
    path = Path(__file__).parents[1] / "examples" / "profile.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    html = [o["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]
    assert html, "no HTML output"
    tables = _Tables()
    tables.feed(html[0])
    # torchvision's metadata for mobilenet_v2: 300,774,272 MACs and 3,504,872 params, in the totals table
    assert "300,774,272" in tables.cells and "3,504,872" in tables.cells
    text = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                   for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "depthwise" in text and "pointwise" in text  # to_pandas() grouped by kind
    assert "separable" in "".join(html)  # the compare result

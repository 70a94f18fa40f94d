"""Every model a user brings (issue 11): data-dependent models (a real CPU run when the meta device cannot run them,
refused above the memory it would need), torchvision detection / segmentation / video / optical-flow models with
the inputs their forward takes, outputs of any structure, tied and shared parameters, recurrent layers.
Expected numbers: FlopCounterMode / 2 on the same model and inputs, torch's parameter counts, or hand arithmetic in
the comment."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from conftest import run_in_process
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dscalc.errors import RuntimeFailure
from dscalc.trace import tracer
from dscalc.trace.profile import profile_model

dscalc = run_in_process


def fcm_macs(model, *inputs) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def seeded(*shape) -> torch.Tensor:
    """The input a real run draws: uniform in [0, 1), generator seeded with tracer.SEED (0)."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(tracer.SEED))


# --- data-dependent models ----------------------------------------------------------------------------------------

GATE = textwrap.dedent("""
    import torch
    from torch import nn

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            keep = torch.nonzero(x[:, 0] > 0.5).flatten()  # which rows go on depends on their values
            return self.fc(x[keep])
""")


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        keep = torch.nonzero(x[:, 0] > 0.5).flatten()
        return self.fc(x[keep])


def test_a_data_dependent_model_runs_for_real():
    # nonzero has no meta kernel: the model runs on the CPU on the seeded uniform input; the rows that pass the
    # gate are counted from that same input here: kept x 8 x 4 MACs
    kept = int((seeded(10, 8)[:, 0] > 0.5).sum())
    result = profile_model(Gate(), [(10, 8)])
    assert 0 < kept < 10 and result.totals["macs"] == kept * 8 * 4
    assert result.outputs == [(kept, 4)]
    assert any("real CPU run" in n and "nonzero" in n for n in result.notes)


def test_a_data_dependent_model_from_a_file(tmp_path):
    # the CLI builds the model on meta, then on the CPU (random weights, seed 0) for the real run
    path = tmp_path / "gate.py"
    path.write_text(GATE)
    kept = int((seeded(10, 8)[:, 0] > 0.5).sum())
    r = dscalc("profile", str(path), "--input", "10x8", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["macs"] == kept * 32 and any("random weights" in n for n in data["notes"])


def test_a_real_run_too_large_for_the_machine_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "gate.py"
    path.write_text(GATE)
    monkeypatch.setattr(tracer, "available_memory", lambda: 100)  # bytes: less than its weights
    r = dscalc("profile", str(path), "--input", "10x8")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "needs a real CPU run" in r.stderr and "available" in r.stderr


def test_a_meta_model_without_a_cpu_builder_says_what_to_do():
    with torch.device("meta"):
        model = Gate()
    with pytest.raises(RuntimeFailure, match="on the meta device"):
        profile_model(model, [(10, 8)])


def test_detection_model_takes_a_list_of_images():
    # SSDlite's forward takes a list of 3xHxW images; NMS and nonzero have no meta kernel: a real CPU run
    # (random weights, seed 0), compared with FlopCounterMode on the same model and the same seeded image
    tv = pytest.importorskip("torchvision")
    from dscalc.report import profile
    from dscalc.study.model import study
    from dscalc.trace.source import ModelSource

    source = ModelSource.of("torchvision:ssdlite320_mobilenet_v3_large")
    report = profile.draw(study(source, [(3, 320, 320)]))
    model = source.load("cpu")
    assert isinstance(model, tv.models.detection.ssd.SSD)
    expected = fcm_macs(model, [seeded(3, 320, 320)])
    assert report.data["totals"]["macs"] == expected
    assert report.data["totals"]["params"] == sum(p.numel() for p in model.parameters())
    assert any("real CPU run" in n for n in report.data["notes"])
    assert report.data["outputs"][0][1] == 4  # boxes (N, 4), from a list of dicts


def test_segmentation_model_returns_a_dict():
    # LR-ASPP returns OrderedDict(out=...): counted as FlopCounterMode counts it, its output shape reported
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = tv.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    result = profile_model(model, [(1, 3, 128, 128)])
    assert result.totals["macs"] == fcm_macs(model, torch.empty(1, 3, 128, 128, device="meta"))
    assert result.outputs == [(1, 21, 128, 128)]


def test_video_model():
    tv = pytest.importorskip("torchvision")
    with torch.device("meta"):
        model = tv.models.video.r3d_18(weights=None).eval()
    result = profile_model(model, [(1, 3, 4, 56, 56)])
    assert result.totals["macs"] == fcm_macs(model, torch.empty(1, 3, 4, 56, 56, device="meta"))
    assert result.totals["params"] == sum(p.numel() for p in model.parameters())


def test_optical_flow_takes_two_inputs():
    # RAFT-small: forward(image1, image2); it returns a list of flow predictions, one per update (its correlation
    # pyramid needs feature maps of 16 at least: 128x128 images)
    pytest.importorskip("torchvision")
    r = dscalc("profile", "torchvision:raft_small", "--input", "1x3x128x128", "--input", "1x3x128x128", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.optical_flow.raft_small(weights=None).eval()
    x = torch.empty(1, 3, 128, 128, device="meta")
    assert data["totals"]["macs"] == fcm_macs(model, x, x)
    assert len(data["outputs"]) == 12 and data["outputs"][0] == [1, 2, 128, 128]  # 12 flow updates by default


class Structured(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 2)

    def forward(self, x):
        return {"a": self.a(x), "none": None, "rest": [self.b(x), (x.sum(),)]}


def test_outputs_of_any_structure():
    # a dict holding None, a list and a tuple: every tensor leaf is an output; 2*4*3 + 2*4*2 = 40 MACs
    result = profile_model(Structured(), [(2, 4)])
    assert result.totals["macs"] == 40 and result.outputs == [(2, 3), (2, 2), ()]

    class Nothing(nn.Module):
        def forward(self, x):
            return None

    assert profile_model(Nothing(), [(2, 4)]).outputs == []


# --- tied and shared parameters -----------------------------------------------------------------------------------

class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Linear(16, 16)
        self.decode = nn.Linear(16, 16)
        self.decode.weight = self.encode.weight  # one weight, two layers

    def forward(self, x):
        return self.decode(torch.relu(self.encode(x)))


def test_tied_weights_count_once_in_params_and_twice_in_macs():
    # params: the shared 16x16 weight once + two biases = 256 + 16 + 16 = 288 (= sum(p.numel())); MACs: both
    # layers on 4 rows, 2 * 4*16*16 = 2,048; the weight is listed under the first module that owns it
    model = Tied()
    result = profile_model(model, [(4, 16)])
    assert result.totals["params"] == sum(p.numel() for p in model.parameters()) == 288
    assert result.totals["macs"] == 2_048
    rows = {r.name: r for r in result.rows}
    assert rows["encode"].params == 272 and rows["decode"].params == 16 and rows["decode"].macs == 1_024


def test_tied_weights_from_a_file(tmp_path):
    # the same model through the CLI (functional_call refused tied weights before)
    path = tmp_path / "tied.py"
    path.write_text("import torch\nfrom torch import nn\n\nclass Tied(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.encode = nn.Linear(16, 16)\n"
                    "        self.decode = nn.Linear(16, 16)\n        self.decode.weight = self.encode.weight\n\n"
                    "    def forward(self, x):\n        return self.decode(torch.relu(self.encode(x)))\n")
    r = dscalc("profile", str(path), "--input", "4x16", "-f", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["params"] == 288 and json.loads(r.stdout)["totals"]["macs"] == 2_048


def test_coat_lite_tiny():
    # timm's coat_lite_tiny shares parameters between modules: params as sum(p.numel()), MACs as FlopCounterMode
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model("coat_lite_tiny", pretrained=False).eval()
    result = profile_model(model, [(1, 3, 224, 224)])
    assert result.totals["params"] == sum(p.numel() for p in model.parameters())
    assert result.totals["macs"] == fcm_macs(model, torch.empty(1, 3, 224, 224, device="meta"))


# --- recurrent layers ---------------------------------------------------------------------------------------------
# Convention: per time step and direction, the input projection (gates x hidden x input) and the hidden projection
# (gates x hidden x hidden), bias excluded; 4 gates for an LSTM, 3 for a GRU, 1 for a plain RNN. With proj_size P
# the hidden state is P wide and each step adds the projection P x hidden.

RECURRENT = [
    # LSTM, 2 layers, bidirectional, batch first, batch 3, 7 steps, input 16, hidden 32:
    # layer 0: 2 directions x 7*3 x 4*32 x (16 + 32) = 258,048; layer 1 (input 2*32): 2 x 21 x 128 x 96 = 516,096
    (lambda: nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True), (3, 7, 16), 258_048 + 516_096),
    # GRU: 7 steps x batch 3 x 3*32 x (16 + 32) = 96,768
    (lambda: nn.GRU(16, 32), (7, 3, 16), 96_768),
    # RNN (tanh) 2 layers: 21 x 32 x (16 + 32) + 21 x 32 x (32 + 32) = 32,256 + 43,008
    (lambda: nn.RNN(16, 32, num_layers=2), (7, 3, 16), 32_256 + 43_008),
    # RNN with relu, unbatched input (7, 16): 7 x 32 x 48 = 10,752
    (lambda: nn.RNN(16, 32, nonlinearity="relu"), (7, 16), 10_752),
    # LSTM with proj_size 8: 21 x (4*32 x (16 + 8) + 8 x 32) = 21 x 3,328 = 69,888
    (lambda: nn.LSTM(16, 32, proj_size=8), (7, 3, 16), 69_888),
    # cells, one step on batch 3: LSTMCell 3 x 128 x 48 = 18,432; GRUCell 3 x 96 x 48 = 13,824; RNNCell 3 x 32 x 48
    (lambda: nn.LSTMCell(16, 32), (3, 16), 18_432),
    (lambda: nn.GRUCell(16, 32), (3, 16), 13_824),
    (lambda: nn.RNNCell(16, 32), (3, 16), 4_608),
]


@pytest.mark.parametrize("build,shape,expected", RECURRENT)
def test_recurrent_layers_by_hand(build, shape, expected):
    result = profile_model(build().eval(), [shape])
    assert result.totals["macs"] == expected


class GatedLSTM(nn.Module):
    """An LSTM after a data-dependent gate: the real CPU run goes through oneDNN's fused LSTM kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, 32, batch_first=True)

    def forward(self, x):
        keep = torch.nonzero(x[:, 0, 0] >= 0).flatten()  # every row (values are >= 0), but only a real run knows
        return self.lstm(x[keep])[0]


def test_the_fused_cpu_lstm_kernel_counts_the_same():
    # a real CPU run of nn.LSTM dispatches aten.mkldnn_rnn_layer (FlopCounterMode has no formula for it and counts
    # 0 on the CPU); dscalc's formula gives the hand count: 3 x 7 steps x 4*32 x (16 + 32) = 129,024
    model = GatedLSTM().eval()
    assert profile_model(model, [(3, 7, 16)]).totals["macs"] == 129_024
    assert fcm_macs(nn.LSTM(16, 32, batch_first=True).eval(), seeded(3, 7, 16)) == 0


def test_sequencer_lstms_by_hand():
    # timm's sequencer2d_s (here with one block per stage): each LSTM2d runs a bidirectional LSTM down the columns
    # (rnn_v: H steps, batch W) and one along the rows (rnn_h: W steps, batch H). Patch sizes 7, 2, 1, 1 on 224:
    # 32x32, then 16x16 three times; per LSTM: 2 directions x H*W x 4*hidden x (channels + hidden)
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model("sequencer2d_s", pretrained=False, layers=(1, 1, 1, 1)).eval()
    result = profile_model(model, [(1, 3, 224, 224)])
    rows = {r.name: r.macs for r in result.rows}
    sizes = {0: 32, 1: 16, 2: 16, 3: 16}
    checked = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM):
            side = sizes[int(name.split(".")[1])]
            hidden, channels = module.hidden_size, module.input_size
            assert rows[name] == 2 * side * side * 4 * hidden * (channels + hidden), name
            checked += 1
    assert checked == 8


def test_faster_rcnn_from_the_cli():
    # issue 11's reproducer: `dscalc profile torchvision:fasterrcnn_mobilenet_v3_large_320_fpn` stopped with
    # "NotImplementedError: The register_meta function for torch.nonzero()"; now a real CPU run, equal to
    # FlopCounterMode on the same CPU model (random weights, seed 0) and the same seeded image
    pytest.importorskip("torchvision")
    from dscalc.trace.source import ModelSource

    name = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
    r = dscalc("profile", name, "--input", "3x320x320", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    model = ModelSource.of(name).load("cpu")
    assert data["totals"]["macs"] == fcm_macs(model, [seeded(3, 320, 320)])
    assert data["totals"]["params"] == sum(p.numel() for p in model.parameters())

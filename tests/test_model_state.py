"""Profiling never changes the model (issue 14, item 4), whatever its format: eager modules, TorchScript modules
and exported programs, in train and eval mode - state_dict, training flags, hooks and requires_grad compared
before and after. A forward's Python side effects (attributes it sets, `self.eval()`, hooks it registers on itself)
land on the copy dscalc runs, not on the model."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from dscalc.trace.profile import profile_model


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def snapshot(model) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "hooks": [(n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()]
        if isinstance(model, nn.Module) and not isinstance(model, torch.jit.ScriptModule) else [],
        "global": (len(torch.nn.modules.module._global_forward_hooks),
                   len(torch.nn.modules.module._global_forward_pre_hooks)),
    }


def assert_unchanged(before: dict, model) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for field in ("training", "requires_grad", "hooks", "global"):
        assert before[field] == after[field], field


def exported(train: bool):
    model = Net().train(train)
    return torch.export.export(model, (torch.rand(2, 3, 8, 8),)).module()


FORMATS = {
    "eager": lambda train: Net().train(train),
    "torchscript": lambda train: torch.jit.script(Net().train(train)),
    "export": exported,
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_profiling_leaves_the_model_as_it_was(fmt, train):
    model = FORMATS[fmt](train)
    with torch.no_grad():  # give the BatchNorm statistics values that an update would change
        for name, buffer in model.named_buffers():
            if "running_mean" in name:
                buffer.fill_(0.25)
    before = snapshot(model)
    result = profile_model(model, [(2, 3, 8, 8)])
    # conv 3->8 3x3 'same' on 2x8x8: 2*8*3*9*64 = 27,648; fc 8->4 on 2 rows: 64
    assert result.totals["macs"] == 27_648 + 64
    assert_unchanged(before, model)
    assert all(t.device.type == "cpu" for t in model.state_dict().values())


def test_a_torchscript_module_in_train_mode_keeps_its_statistics_from_the_cli(tmp_path):
    # the .pt file is loaded, interpreted on meta tensors, and the file itself is never rewritten
    from conftest import run_in_process

    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(Net().train()), path)
    data = path.read_bytes()
    r = run_in_process("profile", str(path), "--input", "2x3x8x8", "-f", "json")
    assert r.returncode == 0, r.stderr
    assert path.read_bytes() == data


class SideEffects(nn.Module):
    """A forward that changes Python state: a counter, its own mode, a hook it registers on itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        self.eval()
        self.register_forward_hook(lambda *args: None)
        self.fc.weight.requires_grad_(False)
        return self.fc(x)


def test_python_side_effects_of_a_forward_land_on_the_copy():
    model = SideEffects().train()
    before = snapshot(model)
    assert profile_model(model, [(2, 4)]).totals["macs"] == 2 * 4 * 4
    assert model.calls == 0
    assert_unchanged(before, model)


class Uncopyable(SideEffects):
    """A model that deepcopy refuses (it holds a lock): dscalc runs it functionally instead."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def test_a_model_that_cannot_be_copied_keeps_its_tensors_and_modes():
    # run functionally on meta tensors: its state_dict and training flags are as they were; the counter its forward
    # increments is outside the promise, and the result says so
    model = Uncopyable().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    result = profile_model(model, [(2, 4)])
    assert result.totals["macs"] == 32
    assert model.training and model.fc.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert any("cannot be copied" in n for n in result.notes)

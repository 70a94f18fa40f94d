"""Measured truth on the CPU: roofline arithmetic by hand, the timing engine's records, `--time` leaving the
counts unchanged, `device`, `compare`, `sweep`, and CUDA asked for where there is none."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import run_in_process

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv
from dscalc.cost.parse import values as parse_values
from dscalc.measure import modules, settings
from dscalc.measure.ceilings import Ceilings
from dscalc.measure.roofline import predict, predict_pair
from dscalc.trace.convert import separable_copy
from dscalc.trace.profile import profile_model

CEIL = Ceilings("cpu", "test", {"float32": 1e11}, bandwidth=1e10, launch=5e-6)


def test_roofline_by_hand():
    # 3x3 64->128 on 56x56 fp32: 462,422,016 FLOPs / 1e11 FLOP/s = 4.624 ms (compute);
    # bytes 4*(64*3136 + 128*3136 + 73,728) = 2,703,360 / 1e10 B/s = 0.27 ms -> compute-bound
    p = predict(conv(64, 128, 3, 56, padding="same"), CEIL)
    assert p.bound == "compute" and p.seconds == pytest.approx(462_422_016 / 1e11)
    # depthwise 3x3 on 64x56x56: 2*1,806,336 FLOPs = 36 µs; bytes 4*(2*200,704 + 576) = 1,607,936 -> 161 µs
    pair = separable_of(conv(64, 128, 3, 56, padding="same"))
    dw, pw, total = predict_pair(pair, CEIL)
    assert dw.bound == "memory" and dw.seconds == pytest.approx(1_607_936 / 1e10)
    assert total == pytest.approx(dw.seconds + pw.seconds)  # two kernels
    # a 1x1 conv on 1x1 input is launch-bound
    assert predict(conv(4, 4, 1, 1), CEIL).bound == "launch"


def test_timing_record_and_row_errors(monkeypatch):
    quick = settings.Settings(min_run_time=0.05, max_run_time=0.5)
    t = modules.time_layer(conv(8, 16, 3, 16, padding="same"), quick)
    assert t.error is None and t.median > 0 and t.iqr >= 0 and t.runs >= 1 and t.per_run >= 1

    def broken(layer):
        raise RuntimeError("CUDA out of memory (simulated)\nmore text")

    monkeypatch.setattr(modules, "module_for", broken)
    t = modules.time_layer(conv(8, 16, 3, 16), quick)
    assert t.median is None and t.error == "CUDA out of memory (simulated)"


class _FakeTimer:
    """torch.utils.benchmark.Timer on a simulated clock: each call of `fn` takes PER_CALL seconds, every block
    is recorded (calls, seconds)."""

    PER_CALL = 26e-6
    blocks: list[tuple[int, float]] = []

    def __init__(self, stmt, globals, label="", num_threads=1):
        pass

    def timeit(self, number):
        seconds = number * self.PER_CALL
        self.blocks.append((number, seconds))
        return type("M", (), {"raw_times": [seconds]})()


def test_timing_honours_the_run_times_it_is_given(monkeypatch):
    # the protocol's blocks last ~10 ms whatever the kernel: a 26 µs call timed with min_run_time 0.05 s runs
    # int(0.01 / 26e-6) = 384 calls a block and stops once 5 blocks and 0.05 s have passed with a steady median
    # (torch.utils.benchmark's adaptive_autorange sized its blocks to 260 ms here, 1.3 s in all)
    from torch.utils import benchmark

    from dscalc.measure import timer

    monkeypatch.delenv("DSCALC_MAX_RUN_TIME", raising=False)  # conftest's cap would shorten the run times
    monkeypatch.setattr(benchmark, "Timer", _FakeTimer)
    _FakeTimer.blocks = []
    t = timer.measure(lambda: None, settings.Settings(min_run_time=0.05, max_run_time=0.4))
    timed = _FakeTimer.blocks[1:]  # the first is the one call that sizes the blocks
    assert _FakeTimer.blocks[0] == (1, 26e-6) and t.per_run == 384 and t.runs == len(timed) == 6
    assert sum(s for _, s in timed) == pytest.approx(6 * 384 * 26e-6)  # 5 blocks are 49.9 ms: one more
    assert t.median == pytest.approx(26e-6) and t.iqr == pytest.approx(0, abs=1e-15) and t.reliable
    # a call longer than max_run_time: one call a block, stopped at 3 x max_run_time, fewer blocks than a
    # reliable timing needs
    monkeypatch.setattr(_FakeTimer, "PER_CALL", 1.0)
    _FakeTimer.blocks = []
    t = timer.measure(lambda: None, settings.Settings(min_run_time=0.2, max_run_time=0.4))
    assert t.per_run == 1 and t.runs == 2 and t.median == pytest.approx(1.0) and not t.reliable


def test_configured_restores_global_state():
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.get_num_threads())
    with settings.configured(settings.Settings(threads=1, tf32=True)) as ctx:
        assert torch.backends.cudnn.benchmark and ctx["threads"] == 1 and ctx["tf32"]
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.get_num_threads()) == before


def test_separable_copy_leaves_the_original():
    # Conv2d(16, 32, 3, padding=1) on 8x8: dw 16*9*64 = 9,216 + pw 16*32*64 = 32,768 = 41,984 MACs;
    # params 144 + (512 + 32 bias) = 688
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 8, 1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    clone, replaced = separable_copy(model)
    assert replaced == 1 and isinstance(model[0], torch.nn.Conv2d)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    result = profile_model(clone, [(1, 16, 8, 8)])
    assert result.totals["macs"] == 41_984 + 32 * 8 * 64
    assert result.totals["params"] == 688 + 32 * 8 + 8
    assert clone(torch.zeros(1, 16, 8, 8)).shape == (1, 8, 8, 8)


def test_parse_values():
    assert parse_values("32:512:x2", "cin") == [32, 64, 128, 256, 512]
    assert parse_values("1:7:3,9", "k") == [1, 4, 7, 9]
    with pytest.raises(Exception, match="--cin|cin"):
        parse_values("32:x", "cin")


dscalc = run_in_process  # conftest: `dscalc ARGS` through dscalc.cli.main


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A measured device cache, shared by the tests below (one measurement of this CPU). The machine counts as
    quiet (a loaded test machine would otherwise be measured again each time: tested on its own below)."""
    from dscalc.measure import ceilings

    mp = pytest.MonkeyPatch()
    mp.setattr(ceilings, "machine_load", lambda: 0.0)
    home = tmp_path_factory.mktemp("cache")
    env = {"XDG_CACHE_HOME": str(home)}
    r = dscalc("device", "-f", "json", env=env)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["cached"] is False and first["peak_flops"]["float32"] > 0 and first["bandwidth"] > 0
    assert 0 < first["launch"] < 1
    again = json.loads(dscalc("device", "-f", "json", env=env).stdout)
    assert again["cached"] is True and again["peak_flops"] == first["peak_flops"]
    yield env
    mp.undo()


def test_time_leaves_counts_unchanged(fixed_ceilings):
    args = ["layer", "--k", "3", "--cin", "32", "--cout", "64", "--size", "28", "-f", "json"]
    plain = json.loads(dscalc(*args, env=fixed_ceilings).stdout)
    timed = json.loads(dscalc(*args, "--time", env=fixed_ceilings).stdout)
    assert plain["rows"] == timed["rows"] and plain["separable"] == timed["separable"]
    speed = timed["timing"]["speedup"]
    assert speed["macs"] == pytest.approx(plain["rows"][0]["macs"] / plain["separable"]["macs"])
    assert speed["measured"] > 0 and speed["predicted"] > 0
    for row in timed["timing"]["rows"]:
        assert row["median_s"] > 0 and row["runs"] >= 1 and "iqr_s" in row


def test_network_and_profile_time_leave_counts_unchanged(fixed_ceilings, tmp_path):
    plain = json.loads(dscalc("network", "cifar_depthwise", "-f", "json", env=fixed_ceilings).stdout)
    timed = json.loads(dscalc("network", "cifar_depthwise", "--time", "-f", "json", env=fixed_ceilings).stdout)
    assert plain["rows"] == timed["rows"] and plain["totals"] == timed["totals"]
    assert timed["timing"]["measured_s"] > 0
    model = tmp_path / "m.py"
    model.write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), "
                     "nn.Conv2d(16, 16, 3, groups=16))\n")
    args = ["profile", str(model), "-i", "1x3x32x32", "-f", "json"]
    plain = json.loads(dscalc(*args, env=fixed_ceilings).stdout)
    timed = json.loads(dscalc(*args, "--time", env=fixed_ceilings).stdout)
    assert plain["rows"] == timed["rows"] and plain["totals"] == timed["totals"]
    assert timed["timing"]["end_to_end"]["median_s"] > 0 and len(timed["timing"]["layers"]) == 2
    # Conv2d(3, 16, 3) on 32x32 -> 30x30: 3*16*9*900 = 388,800 MACs; as dw + pw 3*9*900 + 3*16*900 = 67,500
    first = timed["timing"]["layers"][0]
    assert first["macs"] == 388_800 and first["separable"]["macs"] == 67_500
    assert first["separable"]["speedup"]["macs"] == pytest.approx(388_800 / 67_500)
    assert first["separable"]["speedup"]["measured"] > 0
    assert "separable" not in timed["timing"]["layers"][1]  # the depthwise conv has no counterpart


def test_compare_network_and_model(fixed_ceilings, tmp_path):
    r = json.loads(dscalc("compare", "cifar_conv", "-f", "json", env=fixed_ceilings).stdout)
    # cifar_conv (worked in test_network): 230,885,888 MACs. As separable, per module [1x1 conv, 2 x (dw + pw)]:
    #   32x32: 3*64*1024 + 2*(64*9*1024 + 64*64*1024)          = 196,608 + 9,568,256   = 9,764,864
    #   16x16: 64*128*256 + 2*(128*9*256 + 128*128*256)       = 2,097,152 + 8,978,432 = 11,075,584
    #   8x8:   128*256*64 + 2*(256*9*64 + 256*256*64)         = 2,097,152 + 8,683,520 = 10,780,672
    #   dense 256*10 = 2,560                                                total 31,623,680
    assert r["original"]["macs"] == 230_885_888 and r["variant"]["macs"] == 31_623_680
    model = tmp_path / "m.py"
    model.write_text("from torch import nn\ndef net():\n    return nn.Conv2d(16, 32, 3, padding=1)\n")
    r = json.loads(dscalc("compare", str(model), "-i", "1x16x8x8", "--time", "-f", "json", env=fixed_ceilings).stdout)
    # 3x3 16->32 on 8x8: 16*32*9*64 = 294,912; as dw + pw: 16*9*64 + 16*32*64 = 9,216 + 32,768 = 41,984
    assert (r["original"]["macs"], r["variant"]["macs"], r["replaced"]) == (294_912, 41_984, 1)
    assert r["original"]["measured_s"] > 0 and r["variant"]["measured_s"] > 0


def test_sweep_csv_and_plot(fixed_ceilings, tmp_path):
    r = dscalc("sweep", "--cin", "16,32", "--size", "8", "--batch", "1,2", "--no-time", "-f", "csv", env=fixed_ceilings)
    lines = r.stdout.splitlines()
    assert len(lines) == 5 and lines[0].startswith("cin,cout,k,size,batch,dtype")
    # 3x3 16->16: MAC speedup 1 / (1/16 + 1/9)
    assert float(lines[1].split(",")[lines[0].split(",").index("mac_speedup")]) == pytest.approx(1 / (1 / 16 + 1 / 9))
    measured = json.loads(dscalc("sweep", "--cin", "16", "--size", "8", "-f", "json", env=fixed_ceilings).stdout)
    assert measured["rows"][0]["measured_speedup"] > 0 and measured["measured"] == 1
    plot = tmp_path / "sweep.png"
    r = dscalc("sweep", "--cin", "16,32", "--size", "8", "--no-time", "--plot", str(plot), env=fixed_ceilings)
    assert r.returncode == 0 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    from dscalc.errors import RuntimeFailure
    from dscalc.report.plot import sweep_plot as plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    # a missing extra is a runtime failure (exit 1) naming the extra, as README's install table says
    with pytest.raises(RuntimeFailure, match=r"needs matplotlib, which is not installed: pip install 'dscalc\[plot\]'"):
        plot([], str(tmp_path / "x.png"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("args", [["layer", "--k", "3", "--cin", "8", "--cout", "8", "--time", "--device", "cuda"],
                                  ["device", "--device", "cuda"],
                                  ["sweep", "--cin", "8", "--device", "cuda"]])
def test_cuda_missing_is_one_line_exit_1(args):
    r = dscalc(*args)
    assert r.returncode == 1
    assert r.stderr == ("dscalc: error: --device cuda: no CUDA device is available here "
                        "(torch.cuda.is_available() is False)\n")


@pytest.mark.skipif(torch.get_num_threads() == 1, reason="the default is already one thread")
def test_ceilings_are_kept_per_thread_count(cache):
    one = json.loads(dscalc("device", "--threads", "1", "-f", "json", env=cache).stdout)
    assert one["cached"] is False and "(1 thread)" in one["name"]  # not the default entry
    again = json.loads(dscalc("device", "--threads", "1", "-f", "json", env=cache).stdout)
    assert again["cached"] is True and again["peak_flops"] == one["peak_flops"]


TINY = ("from torch import nn\n\ndef net():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1))\n")
TINY_SPEC = "input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3}\n  - relu\n  - pointwise: {filters: 8}\n"
MEASURED = {"timing.median_s", "timing.iqr_s", "timing.runs", "timing.reliable", "timing.predicted_s",
            "timing.bound"}


def test_every_time_reaches_csv(fixed_ceilings, tmp_path):
    # measurements are rows like counts: layer, network, profile and compare --time carry them in CSV
    (tmp_path / "tiny.py").write_text(TINY)
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    layer = ["--k", "3", "--cin", "8", "--cout", "8", "--size", "8"]
    for args, extra in [(["layer", *layer], {"timing.speedup.measured", "timing.speedup.macs", "timing.verdict"}),
                        (["network", str(tmp_path / "tiny.yaml")], set()),
                        (["profile", str(tmp_path / "tiny.py"), "-i", "1x3x8x8"],
                         {"timing.separable.median_s", "timing.separable.speedup.measured",
                          "timing.separable.speedup.macs"}),
                        (["compare", *layer], {"timing.speedup.measured"})]:
        r = dscalc(*args, "--time", "-f", "csv")
        assert r.returncode == 0, r.stderr
        header = r.stdout.splitlines()[0].split(",")
        assert MEASURED | extra <= set(header), (args[0], sorted(MEASURED | extra - set(header)))
        assert "{" not in r.stdout and "'" not in r.stdout  # no Python reprs in a cell


def test_profile_a_pickled_whole_model_with_time(fixed_ceilings, tmp_path):
    # the --trust-pickle of the command reaches the timed (CPU) build too
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), tmp_path / "whole.pt")
    r = dscalc("profile", str(tmp_path / "whole.pt"), "--trust-pickle", "--time", "-i", "1x3x16x16", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["macs"] == 3 * 8 * 9 * 14 * 14 == 42_336  # 3x3, 3 -> 8 channels, 16x16 -> 14x14
    assert data["timing"]["end_to_end"]["median_s"] > 0


def test_ceilings_measured_under_load_are_measured_again(fixed_ceilings):
    # an entry that says every CPU was busy when it was measured is not reused; a quiet one is
    from dscalc.measure import ceilings

    quiet = ceilings.load_cached("cpu", 1)
    assert quiet is not None and not quiet.under_load and quiet.load == 0.1
    ceilings.save(ceilings.Ceilings(**{**quiet.__dict__, "load": 1.5}))
    assert ceilings.load_cached("cpu", 1) is None
    assert ceilings.Ceilings(**{**quiet.__dict__, "load": 1.5}).under_load


def test_the_time_budget_cap_applies_to_every_measurement(monkeypatch):
    # DSCALC_MAX_RUN_TIME caps min and max run time; unset, the settings stand; a bad value is bad input
    from dscalc.errors import BadInput
    from dscalc.measure.settings import Settings
    from dscalc.measure.timer import budgeted

    monkeypatch.setenv("DSCALC_MAX_RUN_TIME", "0.05")
    capped = budgeted(Settings(min_run_time=0.2, max_run_time=2.0))
    assert (capped.min_run_time, capped.max_run_time) == (0.05, 0.05)
    assert budgeted(Settings(min_run_time=0.01, max_run_time=0.03)).max_run_time == 0.03
    monkeypatch.delenv("DSCALC_MAX_RUN_TIME")
    assert budgeted(Settings()) == Settings()
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("DSCALC_MAX_RUN_TIME", bad)
        with pytest.raises(BadInput, match="DSCALC_MAX_RUN_TIME: expected a number of seconds > 0"):
            budgeted(Settings())


def test_a_bad_time_budget_is_one_line_exit_2(cli, monkeypatch):
    monkeypatch.setenv("DSCALC_MAX_RUN_TIME", "soon")
    r = cli("layer", "--k", "3", "--cin", "4", "--cout", "4", "--size", "4", "--time")
    assert r.code == 2 and "DSCALC_MAX_RUN_TIME: expected a number of seconds > 0, got 'soon'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


_MMAPPED = r"""
import ctypes, sys
sys.path.insert(0, {root!r})
import torch
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if {steady}:
    from dscalc.measure.timer import steady_allocator
    steady_allocator()
held = torch.empty(14 * 1024 * 1024, dtype=torch.uint8)
print(libc.mallinfo2().hblkhd)
"""


def _has_mallinfo2() -> bool:
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 (glibc >= 2.33)
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc's malloc and its mallinfo2")
def test_timings_start_from_the_allocators_steady_state():
    # a 14 MiB tensor: in a fresh process glibc serves it from a mapping of its own, made and unmapped on every
    # allocation (a page fault per 4 KiB each time: 3,568 a call for an NCHW depthwise conv at batch 16, see
    # benchmarks/results/allocator.txt); once steady_allocator has freed its 32 MiB block, from the kept heap.
    # mallinfo2's hblkhd (bytes in such mappings) tells which, whatever the kernel does with the pages
    import subprocess
    import sys
    from pathlib import Path

    def mapped(steady: bool) -> int:
        code = _MMAPPED.format(root=str(Path(__file__).resolve().parent.parent), steady=steady)
        return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                   .stdout.split()[-1])

    if mapped(False) < 14 * 1024 * 1024:
        pytest.skip("this process's allocator serves 14 MiB from its heap already: nothing to tell apart")
    assert mapped(True) < 14 * 1024 * 1024

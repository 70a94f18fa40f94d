"""First contact stays fast (issue 31, item 5): no command waits for a calibration unless asked
(`dscalc device --calibrate`); a prediction comes from the cached calibration, else a quick estimate from the
device's ceilings, and says which; predicting from a cached calibration imports no torch. No wall-clock asserts:
the times are benchmarks/bench_first_contact.py's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_script, write_fixed_cache

COMPARE = ("compare", "--k", "3", "--cin", "64", "--cout", "128")
QUICK_LINE = ("predicted: quick estimate from the device's ceilings (not calibrated: run `dscalc device --calibrate` "
              "once")
#: what a quick measurement may take per kernel in these tests (it is still a measurement: no figure is asserted)
SHORT = {"DSCALC_MAX_RUN_TIME": "0.02"}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` in a fresh process with this environment (dscalc imported from this checkout)."""
    full = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)


def _torch_default_threads() -> int:
    """The oracle: what a fresh torch says its thread count is."""
    r = _python("import torch; print(torch.get_num_threads())", {})
    return int(r.stdout)


def _entries(path: Path) -> dict:
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "version"}


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty XDG_CACHE_HOME, for this process and the ones it starts."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    return root


NO_TORCH = ("import sys\nfrom dscalc.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")


def test_torch_version_is_read_without_importing_torch():
    from dscalc.measure import settings

    r = _python("import sys\nfrom dscalc.measure.settings import torch_version\nprint(torch_version())\n"
                "assert 'torch' not in sys.modules", {})
    import torch

    # the oracle is torch itself: the full version, local label included (importlib.metadata drops it: '2.14.1')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == torch.__version__ == settings.torch_version()


def test_the_default_thread_count_is_recorded_once_then_known_without_torch(empty_cache):
    code = ("import sys\nfrom dscalc.measure.ceilings import default_threads\nprint(default_threads())\n"
            "print('torch' in sys.modules)")
    first = _python(code, {})
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [str(_torch_default_threads()), "True"]  # asked of torch, then recorded
    second = _python(code, {})
    assert second.stdout.split() == [str(_torch_default_threads()), "False"]  # read back: no torch
    # OMP_NUM_THREADS sets torch's count (ATen's intraop_default_num_threads reads it first): another entry
    third = _python(code, {"OMP_NUM_THREADS": "1"})
    assert third.stdout.split() == ["1", "True"]
    assert len(_entries(empty_cache / "dscalc" / "threads.json")) == 2


def test_compare_from_a_cached_calibration_imports_no_torch(empty_cache):
    from dscalc.measure.settings import device_name

    write_fixed_cache(device_name)  # fixed ceilings and calibration (conftest), at every thread count
    _python("from dscalc.measure.ceilings import default_threads; default_threads()", {})  # the first contact
    r = _python(NO_TORCH.format(args=list(COMPARE)), {})
    assert r.returncode == 0, r.stderr
    assert "predicted: calibrated model of this device (10 kernel kinds, 3 days ago)" in r.stdout
    # predicted from the fixed calibration (conftest FIXED_MODELS, standard: 20 µs + FLOPs / 50 GFLOP/s): the 3x3
    # 64->128 conv at 56² does 3²·64·128·56² = 231,211,008 MACs = 462,422,016 FLOPs -> 20 µs + 9.248 ms = 9.27 ms
    assert "9.27 ms" in r.stdout


def test_an_empty_cache_predicts_from_a_quick_estimate_without_calibrating(empty_cache):
    r = run_script(*COMPARE, "-f", "json", env=SHORT)
    assert r.returncode == 0, r.stderr
    timing = json.loads(r.stdout)["timing"]
    assert timing["prediction"].startswith(QUICK_LINE)
    assert {row["prediction"]["model"] for row in timing["rows"]} == {"roofline"}
    assert not _entries(empty_cache / "dscalc" / "calibration.json")  # nothing calibrated
    ceilings = _entries(empty_cache / "dscalc" / "device.json")
    assert len(ceilings) == 1  # the quick figures, cached under their own key, marked by their cap
    (key, entry), = ceilings.items()
    assert key.endswith(":max-run-0.02s") and entry["max_run_time"] == 0.02
    # the next contact reads them back: nothing measured, no torch
    again = _python(NO_TORCH.format(args=[*COMPARE]), SHORT)
    assert again.returncode == 0, again.stderr
    assert QUICK_LINE in again.stdout.replace("\n", " ")


def test_predict_and_time_never_calibrate(empty_cache):
    predicted = run_script("layer", "--k", "3", "--cin", "8", "--cout", "16", "--size", "8", "--predict",
                           columns=200, env=SHORT)
    assert predicted.returncode == 0, predicted.stderr
    assert QUICK_LINE in predicted.stdout
    timed = run_script(*COMPARE, "--size", "8", "--time", "-f", "json", env=SHORT)
    assert timed.returncode == 0, timed.stderr
    timing = json.loads(timed.stdout)["timing"]
    assert timing["prediction"].startswith(QUICK_LINE)
    assert all(row["median_s"] > 0 for row in timing["rows"])  # measured, beside the quick estimate
    assert not _entries(empty_cache / "dscalc" / "calibration.json")


def test_the_library_never_calibrates_either(empty_cache):
    r = _python("import dscalc\nstudy = dscalc.compare(k=3, cin=8, cout=16, size=8)\n"
                "print(study.to_dict()['timing']['prediction'])", SHORT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(QUICK_LINE)
    assert not _entries(empty_cache / "dscalc" / "calibration.json")


def test_the_quick_estimate_names_the_command_that_calibrates_for_it():
    from dscalc.measure.ceilings import Ceilings
    from dscalc.measure.predictor import Predictor
    from dscalc.measure.settings import Settings

    ceilings = Ceilings("cpu", "x", {"float32": 1e11}, 1e10, 1e-6)
    other = Predictor(ceilings, Settings(threads=1, channels_last=True, runtime="onnxruntime"), {"float16": None})
    assert other.describe("float16") == (
        "predicted: quick estimate from the device's ceilings (not calibrated for float16, channels-last, "
        "onnxruntime: run `dscalc device --calibrate --threads 1 --dtype float16 --channels-last --runtime "
        "onnxruntime` once, ~2 min)")


def test_quick_ceilings_serve_predictions_only(empty_cache):
    """`dscalc device` never shows the quick figures (it measures the full protocol); a prediction takes any
    cached figures, those measured under load too, rather than measuring again."""
    from dscalc.measure import ceilings

    loaded = ceilings.Ceilings("cpu", "x", {"float32": 2e11}, 1e10, 1e-6, 1.7e9, "t", 1, 5.0)  # under load
    ceilings.save(loaded)
    assert ceilings.load_cached("cpu", 1) is None  # measured again by `dscalc device`
    assert ceilings.load_cached("cpu", 1, quick=True) == loaded  # a prediction takes them rather than wait
    quick = ceilings.Ceilings("cpu", "x", {"float32": 1e11}, 1e10, 1e-6, 1.7e9, "t", 1, 0.1,
                              max_run_time=ceilings.QUICK_RUN)
    ceilings.save(quick)
    assert ceilings.load_cached("cpu", 1) is None  # `dscalc device` never shows the quick figures
    assert ceilings.load_cached("cpu", 1, quick=True) == quick  # quick but measured on a quiet machine: first


def test_a_sweep_predicts_from_the_quick_estimate_and_says_so(empty_cache):
    r = run_script("sweep", "--cin", "8", "--cout", "16", "--k", "3", "--size", "8", "--no-time", columns=200,
                   env=SHORT)
    assert r.returncode == 0, r.stderr
    assert QUICK_LINE in r.stdout
    assert not _entries(empty_cache / "dscalc" / "calibration.json")

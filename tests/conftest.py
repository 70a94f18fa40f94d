"""Shared test machinery: one in-process CLI runner (dscalc.cli.main, as the console script calls it), one
subprocess runner (the installed `dscalc` script), golden files (regenerate with `pytest --overwrite`), and a
device-ceilings cache with fixed figures so predictions are the same on every machine."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
#: every measurement in the tests gets at most 20 ms (dscalc.measure.settings.BUDGET_ENV): no assertion depends on how
#: long a kernel was timed, and the full budget (up to 2 s per row) would take most of the suite's run
os.environ.setdefault("DSCALC_MAX_RUN_TIME", "0.02")
SCRIPT = shutil.which("dscalc", path=str(Path(sys.executable).parent)) or "dscalc"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--overwrite", action="store_true", help="write the golden files instead of comparing")
    parser.addoption("--fuzz", type=int, default=None, help="examples per command for the CLI fuzz test")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:  # the name subprocess uses
        return self.code


def run_in_process(*args: str, columns: int = 80, env: dict[str, str] | None = None, timeout: int = 0) -> Result:
    """`dscalc ARGS` through dscalc.cli.main in this process: its exit status, stdout and stderr."""
    from dscalc.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR", "TERM", *(env or {}))}
    os.environ.update({"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb", **(env or {})})
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(code, out.getvalue(), err.getvalue())


def run_script(*args: str, columns: int = 80, env: dict[str, str] | None = None,
               timeout: int = 600) -> Result:
    """`dscalc ARGS` as a user runs it: the installed console script in a subprocess."""
    full = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    r = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=full, timeout=timeout)
    return Result(r.returncode, r.stdout, r.stderr)


@pytest.fixture
def cli():
    return run_in_process


@pytest.fixture
def script():
    return run_script


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """compare(name, text): text equals tests/golden/NAME (written instead with --overwrite)."""
    overwrite = request.config.getoption("--overwrite")

    def compare(name: str, text: str) -> None:
        path = GOLDEN / name
        if overwrite or not path.exists():
            if not overwrite:
                pytest.fail(f"no golden file {path}: run pytest --overwrite to write it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert text == path.read_text(), f"{name} differs from its golden file (pytest --overwrite regenerates it)"

    return compare


#: the fixed ceilings every prediction in the golden tests uses (a made-up CPU: 100 GFLOP/s fp32, 20 GB/s, 5 µs)
FIXED_CEILINGS = {"peak_flops": {"float32": 1e11, "float16": 2e9, "bfloat16": 2e9}, "bandwidth": 2e10,
                  "launch": 5e-6}


#: the fixed calibration (float32, eager) those tests predict with: kind -> (fixed s, FLOP/s, bytes/s), 0 = no term
FIXED_MODELS = {"standard": (20e-6, 50e9, 0), "grouped": (30e-6, 20e9, 0), "depthwise": (50e-6, 0, 10e9),
                "pointwise": (10e-6, 40e9, 0), "transposed": (30e-6, 25e9, 0), "linear": (10e-6, 30e9, 0),
                "batchnorm": (5e-6, 0, 10e9), "activation": (5e-6, 0, 10e9), "add": (5e-6, 0, 10e9),
                "pooling": (5e-6, 0, 10e9)}


def write_fixed_cache(name_of) -> None:
    """FIXED_CEILINGS and a calibration of FIXED_MODELS for the CPU (named by `name_of(device, threads)`), at every
    thread count, measured "3 days ago" under no load, into the cache dscalc reads now."""
    import torch

    from dscalc.measure import calibrate, ceilings
    from dscalc.measure.predict import Calibration, KernelModel

    models = {kind: KernelModel(kind, fixed, 1 / flops if flops else 0.0, 1 / nbytes if nbytes else 0.0, 10, 0.05)
              for kind, (fixed, flops, nbytes) in FIXED_MODELS.items()}
    when = time.time() - 3 * 86400 - 60
    for threads in range(1, max(os.cpu_count() or 1, torch.get_num_threads()) + 1):
        ceilings.save(ceilings.Ceilings("cpu", name_of("cpu", threads), dict(FIXED_CEILINGS["peak_flops"]),
                                        FIXED_CEILINGS["bandwidth"], FIXED_CEILINGS["launch"], when, "2.14.1",
                                        threads, 0.1))
        calibrate.save(Calibration("cpu", name_of("cpu", threads), threads, "float32", False, "eager",
                                   torch.__version__, when, 90.0, 1e11, models, 0.1))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """No test reads or writes the user's cache, and none measures the machine unless it asks to: every test
    starts with a cache of fixed ceilings and a fixed calibration for this machine's CPU."""
    from dscalc.measure.settings import device_name

    root = tmp_path_factory.mktemp("dscalc-cache")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root)
    write_fixed_cache(device_name)
    yield root
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture
def fixed_ceilings(tmp_path, monkeypatch):
    """The fixed cache (write_fixed_cache) for a CPU named "Test CPU", in ~/.cache with HOME in a temporary
    directory: every table that shows the device, a prediction or the cache is the same on every machine."""
    from dscalc.measure import calibrate, ceilings, settings

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))

    def name(device: str, threads: int | None = None) -> str:
        return "Test CPU"  # (the real name says the thread count; the cache key has it separately)

    monkeypatch.setattr(settings, "device_name", name)
    monkeypatch.setattr(ceilings, "device_name", name)
    monkeypatch.setattr(calibrate, "device_name", name)
    write_fixed_cache(name)
    assert json.loads(ceilings.cache_path().read_text()) and json.loads(calibrate.cache_path().read_text())
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}


@pytest.fixture
def model_files(tmp_path):
    """A small model file (test_golden.MODEL) and a tiny network spec, for the commands that take a target."""
    from test_golden import MODEL

    (tmp_path / "small.py").write_text(MODEL)
    (tmp_path / "tiny.yaml").write_text("input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3}\n  - relu\n")
    return {"model": str(tmp_path / "small.py"), "spec": str(tmp_path / "tiny.yaml")}

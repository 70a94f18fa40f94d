"""Property-based CLI fuzzing (hypothesis, in process through dscalc.cli.main, a fixed seed): for every command,
whatever the options, no traceback, exit status 0, 1 or 2, one clear line on stderr for 1 and 2, JSON that parses
for 0. `pytest tests/test_fuzz.py --fuzz 300` runs more; benchmarks/bench_fuzz.py runs the campaign."""

from __future__ import annotations

import pytest
from conftest import run_in_process
from fuzz_cli import STRATEGIES, judge, make_files
from hypothesis import HealthCheck, given, settings


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture
def quick_timer(monkeypatch):
    """--time runs each call once (so its errors surface) and reports a fixed timing: the fuzz tests the
    boundary, not the machine."""
    from dscalc.measure import modules
    from dscalc.measure.timer import Timing

    def once(fn, settings, label=""):
        try:
            fn()
        except (RuntimeError, ValueError, TypeError) as e:
            return Timing.failed(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return Timing(1e-4, 1e-6, 5, 1, q1=1e-4, q3=1e-4)

    monkeypatch.setattr(modules, "measure", once)


@pytest.mark.parametrize("command", list(STRATEGIES))
def test_fuzz(command, files, fixed_ceilings, quick_timer, request, tmp_path):
    count = request.config.getoption("--fuzz") or 40

    @settings(max_examples=count, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(STRATEGIES[command](files))
    def check(args):
        r = run_in_process(*args)
        verdict = judge(args, r.code, r.stdout, r.stderr)
        assert verdict.ok, f"{verdict.problem}: dscalc {' '.join(args)} -> exit {r.code}\n{r.stderr[-2000:]}"

    check()

"""Property-based CLI fuzzing (hypothesis, in process through dscalc.cli.main, a fixed seed): for every command,
whatever the options, no traceback, exit status 0, 1 or 2, one clear line on stderr for 1 and 2, JSON that parses
for 0. `pytest tests/test_fuzz.py --fuzz 300` runs more; benchmarks/bench_fuzz.py runs the campaign."""

from __future__ import annotations

import pytest
from conftest import run_in_process
from fuzz_cli import STRATEGIES, judge, make_files, measure_once
from hypothesis import HealthCheck, given, settings


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture
def quick_timer(monkeypatch):
    from dscalc.measure import modules

    monkeypatch.setattr(modules, "measure", measure_once)


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

"""The shape of a hostile-input case, shared by the test files that build hostile inputs (tests/hostile_*.py) and the
fuzz campaign (benchmarks/bench_fuzz.py), which runs every case as a whole process under a time and memory bound.

Each tests/hostile_<family>.py module defines ``FAMILY`` (a short name) and ``cases(tmp: Path) -> list[Case]``,
building every file it needs under ``tmp`` itself (nothing is downloaded, nothing outside ``tmp`` is written).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str  # what it tries, e.g. "einsum with two ellipses in one term"
    argv: list[str]  # the dscalc arguments, e.g. ["profile", "/tmp/x/bad.onnx"]
    expect: int  # the exit status a user should get: 0 (handled, report), 1 (runtime failure), 2 (bad input)
    env: dict[str, str] = field(default_factory=dict)  # extra environment (e.g. a HOME with a corrupt cache)
    # how the standard streams are set up: "normal", "stdout-closed", "stderr-closed", "stdout-full" (/dev/full)
    streams: str = "normal"
    cwd: str | None = None  # run from this folder (default: the case's tmp folder)
    stderr_has: str = ""  # a phrase the one-line message must contain ("" = any one line)

"""Hostile ONNX files (issue 23), each built by tests/hostile_onnx.py with onnx.helper: an Einsum that sends ONNX's
shape inference into an endless loop (refused before it runs; and the guard around shape inference stops a loop
by its time bound and by Ctrl-C), shape-arithmetic bombs (counted without evaluating them: the peak memory stays
small), external data (resolved against the model's folder, whatever the current directory holds; locations
outside the folder refused) and malformed nodes (one line naming the node, exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_in_process

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
import hostile_onnx as H  # noqa: E402

ROOT = Path(__file__).parents[1]
#: a generous bound on a child that must not hang: a regression fails the test instead of hanging the suite
BOUND_S = 180


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "COLUMNS": "100", **extra}


def _one_line_error(r, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dscalc: error: "), r.stderr
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------- item 1: Einsum

@pytest.mark.parametrize("equation", H.EINSUM_HANGS)
def test_einsum_with_two_ellipses_in_a_term_is_refused_before_shape_inference(tmp_path, equation):
    """Before the fix this hung forever; run as a subprocess with a timeout so a regression cannot hang the suite."""
    path = H.einsum(tmp_path, equation, "hang")
    r = subprocess.run([sys.executable, "-m", "dscalc", "profile", str(path), "-i", "2x3x4", "-i", "4x5"],
                       capture_output=True, text=True, timeout=BOUND_S, env=_env())
    line = _one_line_error(r)
    assert "MODEL: node 'e' (Einsum)" in line and "more than one ellipsis" in line


@pytest.mark.parametrize("equation", H.EINSUM_BAD)
def test_malformed_einsum_equations_are_bad_input(tmp_path, equation):
    r = run_in_process("profile", str(H.einsum(tmp_path, equation, "bad")), "-i", "2x3x4", "-i", "4x5")
    assert r.code == 2 and "MODEL: node 'e' (Einsum): " in r.stderr and len(r.stderr.strip().splitlines()) == 1


# a run of the real CLI where the Einsum check is switched off, so ONNX's shape inference really loops in C++:
# what the guard must stop (by its time bound, or by Ctrl-C)
UNCHECKED = textwrap.dedent("""
    import sys
    from dscalc.trace import onnx_file
    onnx_file.einsum_problem = lambda node: None
    from dscalc.cli import main
    main(sys.argv[1:])
""")


def test_a_looping_shape_inference_is_stopped_by_its_time_bound(tmp_path):
    path = H.einsum(tmp_path, H.EINSUM_HANGS[0], "hang")
    r = subprocess.run([sys.executable, "-c", UNCHECKED, "profile", str(path), "-i", "2x3x4", "-i", "4x5"],
                       capture_output=True, text=True, timeout=BOUND_S, env=_env(DSCALC_ONNX_INFER_TIMEOUT="2"))
    line = _one_line_error(r)
    assert "MODEL: ONNX shape inference did not finish within 2 s" in line and "DSCALC_ONNX_INFER_TIMEOUT" in line


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out |= {int(p) for p in task.read_text().split()}
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the child")
def test_ctrl_c_stops_a_looping_shape_inference_and_its_child(tmp_path):
    path = H.einsum(tmp_path, H.EINSUM_HANGS[1], "hang")
    p = subprocess.Popen([sys.executable, "-c", UNCHECKED, "profile", str(path), "-i", "2x3x4", "-i", "4x5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + BOUND_S
        children: set[int] = set()
        while not children and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            children = _children(p.pid)  # the shape-inference child, looping
        assert children, "no shape-inference child appeared"
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=BOUND_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err  # the CLI's exit status for Ctrl-C
    assert "Traceback" not in err
    deadline = time.monotonic() + BOUND_S
    while any(_running(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(c) for c in children), "the child outlived Ctrl-C"


def test_the_guard_reports_a_child_that_dies(tmp_path):
    """A child that ends without a reply (killed, or crashed inside onnx's C++) is one line, not an internal
    error."""
    from dscalc.errors import BadInput
    from dscalc.trace import onnx_infer

    with pytest.raises(BadInput, match="crashed on this model .*SIGKILL"):
        onnx_infer.bounded(_die, (), 60)


def _die(conn) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------------ item 2: folding

def _peak(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, int]:
    """`dscalc ARGV` as a child of a fresh interpreter, and the peak RSS (bytes) of its descendants."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stdout.write(str(r.returncode) + '\\n' + str(resource.getrusage(resource.RUSAGE_CHILDREN)"
            ".ru_maxrss) + '\\n' + r.stdout); sys.stderr.write(r.stderr)")
    r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "dscalc", *argv], capture_output=True,
                       text=True, timeout=BOUND_S, env=_env(), cwd=cwd)
    status, kib, out = r.stdout.split("\n", 2)
    return subprocess.CompletedProcess(argv, int(status), out, r.stderr), int(kib) * 1024


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage")
@pytest.mark.parametrize("op", ["Range", "ConstantOfShape", "Expand", "Tile", "Add", "Gather", "Concat", "Constant"])
def test_shape_arithmetic_bombs_are_counted_without_evaluating_them(tmp_path, op):
    """A few hundred bytes declaring a 10^8-element int64 constant (0.8 GB; 1.64 GB peak before the fix): the
    Relu beside it is profiled, the bomb is never evaluated. The peak memory bound is a generous sanity check."""
    path = H.bombs(tmp_path)[op]
    assert path.stat().st_size < 200_000
    r, peak = _peak(["profile", str(path), "-i", "1x4", "-f", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["totals"]["macs"] == 0 and data["totals"]["params"] == 0  # a Relu; integer constants are no params
    assert peak < 1 << 30, f"peak RSS {peak / 2**20:.0f} MiB"


def _evaluated_size(node, feeds) -> int:
    from onnx.reference import ReferenceEvaluator

    return int(ReferenceEvaluator(node).run(None, feeds)[0].size)


@pytest.mark.parametrize("op, inputs, attributes", [
    ("Range", [np.array(2), np.array(17), np.array(3)], {}),
    ("Range", [np.array(10), np.array(-4), np.array(-3)], {}),
    ("Range", [np.array(0.5, np.float32), np.array(3.2, np.float32), np.array(0.25, np.float32)], {}),
    ("Range", [np.array(5), np.array(1), np.array(2)], {}),
    ("ConstantOfShape", [np.array([3, 4, 5])], {}),
    ("Expand", [np.array([[1], [2], [3]]), np.array([2, 1, 6])], {}),
    ("Tile", [np.arange(6).reshape(2, 3), np.array([3, 2])], {}),
    ("Add", [np.arange(4).reshape(4, 1), np.arange(5).reshape(1, 5)], {}),
    ("Where", [np.array([True, False]), np.arange(3).reshape(3, 1), np.array(7)], {}),
    ("Gather", [np.arange(24).reshape(2, 3, 4), np.array([[0, 2], [1, 1], [2, 0]])], {"axis": 1}),
    ("Gather", [np.arange(24).reshape(2, 3, 4), np.array(1)], {"axis": -1}),
    ("Concat", [np.arange(6).reshape(2, 3), np.arange(3).reshape(1, 3)], {"axis": 0}),
    ("Slice", [np.arange(10), np.array([2]), np.array([7])], {}),
])
def test_folded_sizes_are_computed_before_evaluation(op, inputs, attributes):
    """fold_size (never evaluates) against the size of what onnx's reference evaluator computes."""
    from onnx import helper

    from dscalc.trace.onnx_infer import fold_size

    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op, names, ["out"], **attributes)
    size = fold_size(node, inputs)
    exact = _evaluated_size(node, dict(zip(names, inputs)))
    if op == "Slice":
        assert size is not None and size >= exact  # an upper bound: at most its input
    else:
        assert size == exact


# ------------------------------------------------------------------------------------ item 3: external data

def test_external_data_is_read_from_the_models_folder_whatever_the_current_directory(tmp_path, monkeypatch):
    """The model's Expand shape (2, 4, 8, 8) lives in weights.bin beside it; the current directory holds another
    weights.bin of the same layout saying (8, 4, 8, 8). MACs by hand (hostile_onnx.EXTERNAL_MACS): conv a
    4*3*3*3*8*8 = 6,912, conv b 2*4*4*8*8 = 2,048: 8,960; params 4*3*3*3 + 4*4 = 124."""
    model = H.external_model(tmp_path / "model")
    decoy = tmp_path / "decoy"
    H.external_model(decoy, batch=8)
    assert (decoy / "weights.bin").read_bytes() != (model.parent / "weights.bin").read_bytes()
    for cwd in (model.parent, decoy, tmp_path):
        monkeypatch.chdir(cwd)
        r = run_in_process("profile", str(model), "-i", "1x3x8x8", "-f", "json")
        assert r.code == 0, (cwd, r.stderr)
        totals = json.loads(r.stdout)["totals"]
        assert totals["macs"] == H.EXTERNAL_MACS == 8960, cwd
        assert totals["params"] == H.EXTERNAL_PARAMS == 124


def test_external_weights_are_never_read(tmp_path, monkeypatch):
    """Counting needs the dims only: of the three tensors in weights.bin, only the int64 shape the Expand needs is
    read; the two conv weights are never opened (the spy sees every open of weights.bin)."""
    import builtins

    model = H.external_model(tmp_path / "model")
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    def open_(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    r = run_in_process("profile", str(model), "-i", "1x3x8x8", "-f", "json")
    monkeypatch.undo()
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["totals"]["macs"] == H.EXTERNAL_MACS
    assert len([p for p in opened if p.endswith("weights.bin")]) == 1


@pytest.mark.parametrize("case", ["parent", "etc_passwd", "absolute", "dev_zero", "symlink_out", "symlink_dev_zero",
                                  "fifo", "short", "directory", "missing", "empty", "nul", "bad_offset",
                                  "text_offset", "huge_offset"])
def test_external_data_outside_the_models_folder_is_refused(tmp_path, case):
    if case == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = H.outside(tmp_path)[case]
    r = run_in_process("profile", str(path), "-i", "1x3x8x8")
    assert r.code == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line
    assert line.startswith("dscalc: error: MODEL: node 'c' (Conv): initializer 'w': external data")


# ------------------------------------------------------------------------------------ item 4: malformed nodes

@pytest.mark.parametrize("key", list(H.malformed(Path("/nonexistent-placeholder"), build=False)))
def test_malformed_nodes_are_bad_input_naming_the_node(tmp_path, key):
    path, shapes, node = H.malformed(tmp_path)[key]
    r = run_in_process("profile", str(path), *(a for s in shapes for a in ("-i", s)))
    assert r.code == 2, r.stderr
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "internal error" not in line, line
    assert f"MODEL: node '{node}' (" in line


# ------------------------------------------------------------------------------------ every case, as the fuzz runs it

def test_every_hostile_case_gets_its_exit_status(tmp_path, monkeypatch):
    """The cases benchmarks/bench_fuzz.py runs, run here in process (the Einsum that loops is refused before
    shape inference, so none of them can hang)."""
    for case in H.cases(tmp_path):
        monkeypatch.chdir(case.cwd or tmp_path)
        r = run_in_process(*case.argv)
        assert r.code == case.expect, (case.name, r.stderr)
        if case.expect:
            assert len(r.stderr.strip().splitlines()) == 1 and case.stderr_has in r.stderr, (case.name, r.stderr)

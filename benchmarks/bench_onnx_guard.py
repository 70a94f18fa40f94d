"""Start-up cost of the ONNX shape-inference guard (issue 23): whole-process `dscalc profile model.onnx`, paired.

    python benchmarks/bench_onnx_guard.py --before /path/to/checkout/before/the/guard [--rounds 7]
        [--out benchmarks/results/onnx_guard.txt] [--bombs benchmarks/results/onnx_bombs.txt]

Variants, each run once per round in the same order (so drift hits them all alike), after one warm-up run each:
  before    the checkout given by --before (shape inference in process, no bound)
  fork      this checkout as shipped on Linux: inference and folding in a forked child, bounded in time
  spawn     this checkout with the child spawned (a fresh interpreter, as on macOS and Windows)
  inproc    this checkout with the guard taken out (inference in process): the guard's own cost is fork - inproc

Models: `tiny` (two convs, built with onnx.helper) and `mobilenet_v2` (torchvision's, exported with torch.onnx's
TorchScript exporter, random weights; skipped without torch). Prints the median wall time and peak RSS of the
dscalc process and its children (the forked child included) per variant, and the median of the per-round ratios
to `before` and to `inproc`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

INPROC = """
import sys
import dscalc.trace.onnx_infer as g
def inproc(target, args, limit, method=None):
    try:
        return b"O" + g.infer_and_fold(args[0])
    except g._Fails as e:
        return b"B" + str(e).encode()
g.bounded = inproc
from dscalc.cli import main
main(sys.argv[1:])
"""
SPAWN = """
import sys
import dscalc.trace.onnx_infer as g
g.START_METHOD = "spawn"
from dscalc.cli import main
main(sys.argv[1:])
"""


def tiny(folder: Path) -> tuple[Path, str]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = numpy_helper.from_array(np.full((16, 3, 3, 3), 0.1, np.float32), "w1")
    w2 = numpy_helper.from_array(np.full((32, 16, 3, 3), 0.1, np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"], name="r1"),
             helper.make_node("Conv", ["b", "w2"], ["y"], name="c2", pads=[1, 1, 1, 1], strides=[2, 2])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2])
    path = folder / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, "1x3x32x32"


EXPORT = """
import sys, warnings
import torch, torchvision
warnings.simplefilter("ignore")
model = torchvision.models.mobilenet_v2().eval()
torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), sys.argv[1], dynamo=False, opset_version=17,
                  input_names=["x"], dynamic_axes={"x": {0: "N"}})
"""

#: runs the command as its only child and reports its wall time and the peak RSS of it and its own children (the
#: forked shape-inference child included); a fresh, small process, so the peak is not inherited from this one's
TIMED = """
import resource, subprocess, sys, time
start = time.perf_counter()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
if r.returncode:
    sys.exit(f"{' '.join(sys.argv[1:])} -> {r.returncode}: {r.stderr}")
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def mobilenet(folder: Path) -> tuple[Path, str] | None:
    """torchvision's mobilenet_v2 exported in another process (this one stays small), None without torch."""
    path = folder / "mobilenet_v2.onnx"
    r = subprocess.run([sys.executable, "-c", EXPORT, str(path)], capture_output=True, text=True)
    return (path, "1x3x224x224") if r.returncode == 0 else None


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one whole process."""
    # (from a folder of its own: `python -m` would import a dscalc/ in the current directory before PYTHONPATH's)
    r = subprocess.run([sys.executable, "-c", TIMED, *cmd], capture_output=True, text=True, env=env,
                       cwd=tempfile.gettempdir())
    if r.returncode:
        raise SystemExit(r.stderr)
    wall, peak = r.stdout.split()
    return float(wall), int(peak)


def round_trip(path: Path, shape: str, reps: int) -> tuple[float, float]:
    """Median seconds of shape inference and folding of one model, in process and through the guard (a forked
    child), paired in this one process: the guard's own cost without the noise of whole-process start-up."""
    import onnx

    from dscalc.trace import onnx_infer
    from dscalc.trace.source import ModelSource

    model = onnx.ModelProto()
    model.CopyFrom(ModelSource.of(str(path)).load().proto)  # as `dscalc profile` holds it: checked, weights dropped
    dims = [int(d) for d in shape.split("x")]
    value = model.graph.input[0].type.tensor_type.shape
    value.ClearField("dim")
    for d in dims:
        value.dim.add().dim_value = d
    payload = model.SerializeToString()
    inproc, guarded = [], []
    for _ in range(reps):
        start = time.perf_counter()
        onnx_infer.infer_and_fold(payload)
        inproc.append(time.perf_counter() - start)
        start = time.perf_counter()
        onnx_infer.infer(model)
        guarded.append(time.perf_counter() - start)
    return statistics.median(inproc), statistics.median(g - i for g, i in zip(guarded, inproc))


def bombs(before: str, out: str) -> None:
    """Peak RSS of `dscalc profile` on each shape-arithmetic bomb of tests/hostile_onnx.py (a few hundred bytes
    declaring a 10^8-element constant), before and after, each run once under a 6 GB address-space limit."""
    sys.path.insert(0, str(HERE / "tests"))
    import hostile_onnx

    folder = Path(tempfile.mkdtemp(prefix="dscalc-onnx-bombs-"))
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    lines = [f"ONNX shape-arithmetic bombs (10^8 elements each): peak RSS of `dscalc profile BOMB -i 1x4` and its "
             f"children, one run each, {platform.machine()} {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}", "",
             f"{'bomb':<16} {'file':>9} {'before':>18} {'after':>18}"]
    for op, path in hostile_onnx.bombs(folder).items():
        cells = []
        for checkout in (before, str(HERE)):
            env = {**base, "PYTHONPATH": str(Path(checkout).resolve())}
            try:
                _, peak = run(["prlimit", "--as=6000000000", sys.executable, "-m", "dscalc", "profile", str(path),
                               "-i", "1x4"], env)
                cells.append(f"{peak / 2**20:,.0f} MiB")
            except SystemExit as e:
                cells.append(f"failed: {str(e).strip().splitlines()[-1][:40]}")
        lines.append(f"{op:<16} {path.stat().st_size:>7} B {cells[0]:>18} {cells[1]:>18}")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a checkout (or `git archive` export) before the guard")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default=str(HERE / "benchmarks" / "results" / "onnx_guard.txt"))
    parser.add_argument("--bombs", metavar="OUT", help="instead: the peak memory of the bombs, before and after, "
                        "written to OUT (benchmarks/results/onnx_bombs.txt)")
    args = parser.parse_args()
    if args.bombs:
        bombs(args.before, args.bombs)
        return
    folder = Path(tempfile.mkdtemp(prefix="dscalc-onnx-guard-"))
    models = {"tiny": tiny(folder)}
    exported = mobilenet(folder)
    if exported:
        models["mobilenet_v2"] = exported
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {"before": {**base, "PYTHONPATH": str(Path(args.before).resolve())},
            "fork": {**base, "PYTHONPATH": str(HERE)}}
    envs["spawn"] = envs["inproc"] = envs["fork"]
    lines = [f"ONNX shape-inference guard: whole-process `dscalc profile MODEL -i SHAPE`, {args.rounds} paired rounds, "
             f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
             f"load average at start {os.getloadavg()[0]:.1f}", ""]
    for name, (path, shape) in models.items():
        argv = ["profile", str(path), "-i", shape]
        cmds = {"before": [sys.executable, "-m", "dscalc", *argv], "fork": [sys.executable, "-m", "dscalc", *argv],
                "spawn": [sys.executable, "-c", SPAWN, *argv], "inproc": [sys.executable, "-c", INPROC, *argv]}
        for variant, cmd in cmds.items():
            run(cmd, envs[variant])  # warm-up: page cache, .pyc files
        walls: dict[str, list[float]] = {v: [] for v in cmds}
        peaks: dict[str, list[int]] = {v: [] for v in cmds}
        for _ in range(args.rounds):
            for variant, cmd in cmds.items():
                wall, peak = run(cmd, envs[variant])
                walls[variant].append(wall)
                peaks[variant].append(peak)
        lines.append(f"{name} ({path.stat().st_size / 1e6:.2f} MB, --input {shape})")
        for variant in cmds:
            ratio_before = statistics.median(a / b for a, b in zip(walls[variant], walls["before"]))
            ratio_inproc = statistics.median(a / b for a, b in zip(walls[variant], walls["inproc"]))
            lines.append(f"  {variant:<7} median {statistics.median(walls[variant]):6.3f} s   "
                         f"x{ratio_before:5.2f} of before   x{ratio_inproc:5.2f} of inproc   "
                         f"peak RSS {statistics.median(peaks[variant]) / 2**20:6.0f} MiB")
        inproc, extra = round_trip(path, shape, 15)
        lines.append(f"  in one process, 15 paired calls: inference + folding {inproc * 1e3:.1f} ms in process; "
                     f"the forked child adds {extra * 1e3:.1f} ms (median of the paired differences)")
        lines.append("")
    lines.append(f"load average at end {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

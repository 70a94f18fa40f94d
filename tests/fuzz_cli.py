"""Generated command lines for all six commands, and the promise each must keep: no traceback, exit status 0, 1
or 2, exactly one line on stderr for 1 and 2, JSON that parses for 0. Used by tests/test_fuzz.py (a fixed seed, a
modest count) and benchmarks/bench_fuzz.py (the campaign)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

VALID_INTS = st.sampled_from(["1", "2", "3", "4", "8", "16", "32"])
INTS = st.one_of(
    VALID_INTS, VALID_INTS, VALID_INTS,
    st.integers(-3, 600).map(str),
    st.sampled_from(["0", "-1", "1", "2", "3", "7", "64", "2147483647", "2147483648", "10" * 20,
                     str(10**30), "9" * 80, "1e3", "0x10", "٣", "3.5", "", " ", "NaN", "inf"]),
)
PER_DIM = st.one_of(INTS, INTS, st.sampled_from(["3x3", "3x5", "1x2x3", "3x3x3x3", "x", "3x", "3,5", "3xx3", "3x-1",
                                           "3x0", "10**30", "é", "3×3", "0x0"]))
PADDING = st.one_of(st.sampled_from(["same", "valid", "SAME", "1", "0", "2x1", "-1", "full", "1x1x1"]), PER_DIM)
FLOATS = st.sampled_from(["1.0", "0.5", "0.25", "2", "1e6", "1e300", "-1", "0", "nan", "inf", "abc", "1e-300"])
FORMAT = st.sampled_from(["table", "json", "csv", "markdown", "JSON", "xml"])
KINDS = st.sampled_from(["standard", "grouped", "depthwise", "pointwise", "separable", "transposed", "linear",
                         "fancy", "LINEAR", ""])
DTYPES = st.sampled_from(["float32", "float16", "bfloat16", "int8", "float64", "FLOAT32"])
DEVICES = st.sampled_from(["cpu", "cpu", "gpu", "cuda:x", "tpu", "", "CPU", "cuda:99999"])
SHAPES = st.sampled_from(["1x3x16x16", "1x3x8x8", "2x3x16x16", "1x3x0x8", "1x3", "3x16x16", "1x3x16x16x16",
                          "1xfoo", "", "1x3x10**30x10**30", "1x3x99999999999x8", "1x4x16x16", "-1x3x8x8",
                          "1,3,16,16"])


@dataclass
class Files:
    """Awkward files and targets, made once per run in a scratch directory."""

    root: Path
    model: str = ""
    models: list[str] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def make_files(root: Path) -> Files:
    import pickle

    f = Files(root)
    (root / "net.py").write_text("from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), "
                                 "nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8))\n")
    (root / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (root / "forward_exits.py").write_text("import sys\nfrom torch import nn\n\nclass M(nn.Module):\n"
                                           "    def forward(self, x):\n        sys.exit(0)\n")
    (root / "raises.py").write_text("raise ValueError('broken\\nsecond line')\n")
    (root / "printer.py").write_text("print('hello from the model file')\nfrom torch import nn\n\ndef net():\n"
                                     "    print('building')\n    return nn.Conv2d(3, 4, 1)\n")
    (root / "two.py").write_text("from torch import nn\nclass A(nn.Module): pass\nclass B(nn.Module): pass\n")
    (root / "fake.onnx").write_bytes(b"not an onnx file")
    (root / "truncated.pt2").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    (root / "evil.pt").write_bytes(pickle.dumps(os.system))  # unpickling would look up os.system
    (root / "empty.pt").write_bytes(b"")
    (root / "text.pt").write_text("just text")
    f.model = str(root / "net.py")
    f.models = [str(root / n) for n in ("net.py", "exits.py", "forward_exits.py", "raises.py", "printer.py", "two.py",
                                        "fake.onnx", "truncated.pt2", "evil.pt", "empty.pt", "text.pt", "missing.py")]
    f.models += [f"{root / 'net.py'}:net", f"{root / 'net.py'}:Nope", "torchvision:nonet", "timm:nonet", "torchvision:"]
    specs = {
        "ok.yaml": "input: [3, 16, 16]\nlayers:\n  - conv: {filters: 8, k: 3}\n  - bn\n  - relu6\n  - gap\n"
                   "  - dense: {units: 4}\n",
        "malformed.yaml": "layers: [conv: {filters: 8\n",
        "list.yaml": "- 1\n- 2\n",
        "badopt.yaml": "input: [3, 8, 8]\nlayers:\n  - conv: {filters: abc, k: 3, padding: {a: 1}}\n",
        "badpad.yaml": "input: [3, 8, 8]\nlayers:\n  - conv: {filters: 8, k: 3, padding: {a: 1}}\n",
        "badexpand.yaml": "input: [3, 8, 8]\nlayers:\n  - pointwise: {expand: [1]}\n",
        "repeat.yaml": "input: [3, 8, 8]\nlayers:\n  - repeat: {times: 1000000000, layers: [relu]}\n",
        "bomb.yaml": "a: &a [relu, relu, relu, relu, relu, relu, relu, relu, relu, relu]\n"
                     "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                     "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        "bomb2.yaml": "input: [3, 8, 8]\nlayers: &l\n  - block: {layers: [relu, relu]}\n",
        "unicode.yaml": "input: [3, 8, 8]\nlayers:\n  - convé: {filters: 8}\n",
        "deep.yaml": "input: [3, 8, 8]\nlayers: " + "[" * 200 + "]" * 200 + "\n",
        "flat.yaml": "input: [3, 8]\nlayers:\n  - dense: {units: 4}\n",
        "binary.yaml": "",
    }
    for name, text in specs.items():
        (root / name).write_text(text)
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    (root / "big.yaml").write_text("# " + "x" * 1_100_000 + "\n")
    f.specs = [str(root / n) for n in [*specs, "big.yaml"]] + ["mobilenet_v1", "xception", "cifar_conv", "nope",
                                                                str(root / "missing.yaml"), "mobilenet_v2"]
    (root / "out").mkdir(exist_ok=True)
    link = root / "link.txt"
    if not link.exists():
        (root / "target.txt").write_text("old")
        link.symlink_to(root / "target.txt")
    fifo = root / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    f.outputs = [str(root / "out" / "r.txt"), str(root / "out"), str(root / "no" / "dir.txt"), "/dev/null",
                 str(link), "-", str(root / "out" / "é.json")]
    return f


def _opt(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """The option with a value a quarter of the time (so most command lines are mostly valid)."""
    return st.one_of(st.just([]), st.just([]), st.just([]), values.map(lambda v: [name, v]))


def _flag(name: str) -> st.SearchStrategy[list[str]]:
    return st.sampled_from([[], [name]])


def _join(*parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*parts).map(lambda lists: [a for part in lists for a in part])


OPTIMIZERS = st.sampled_from(["sgd", "momentum", "adam", "adamw", "ADAM", "lion", ""])
SIZES = st.sampled_from(["16GiB", "512MiB", "1KB", "1", "0", "-1GB", "lots", "1e30GiB", "16 GiB", "2.5GB", "GiB"])
RUNTIMES = st.sampled_from(["eager", "onnxruntime", "eager,onnxruntime", "tvm", "", "eager,eager", "litert"])


def _training(memory_limit: bool = True) -> st.SearchStrategy[list[str]]:
    """--training and its options (--optimizer alone is refused; --memory-limit implies --training)."""
    parts = [_flag("--training"), _opt("--optimizer", OPTIMIZERS)]
    return _join(*parts, *([_opt("--memory-limit", SIZES)] if memory_limit else []))


def _output(files: Files) -> st.SearchStrategy[list[str]]:
    # --output only with formats (it is exercised with every format); FIFOs would block a reader-less write
    return _join(_opt("-f", FORMAT), _opt("-o", st.sampled_from(files.outputs)))


LAYER_OPTS = [("--cin", INTS), ("--cout", INTS), ("--k", PER_DIM), ("--size", PER_DIM), ("--height", INTS),
              ("--width", INTS), ("--stride", PER_DIM), ("--padding", PADDING), ("--dilation", PER_DIM),
              ("--groups", INTS), ("--depth-multiplier", INTS), ("--output-padding", PER_DIM), ("--dims", INTS),
              ("--batch", INTS), ("--kind", KINDS), ("--dtype", DTYPES)]


def layer_args(files: Files, command: str = "layer") -> st.SearchStrategy[list[str]]:
    valid = st.tuples(st.sampled_from(["3", "8", "16", "32"]), st.sampled_from(["8", "16", "32"]),
                      st.sampled_from(["1", "3", "5"]), st.sampled_from(["8", "14", "28"])).map(
        lambda v: ["--cin", v[0], "--cout", v[1], "--k", v[2], "--size", v[3]])
    opts = [_opt(n, s) for n, s in LAYER_OPTS if command == "layer" or n not in ("--kind", "--output-padding")]
    return _join(st.just([command]), st.one_of(valid, st.just([])), *opts, _flag("--bias"), _flag("--time"),
                 *([_flag("--predict")] if command == "layer" else []), _opt("--runtime", RUNTIMES), _training(),
                 _opt("--device", DEVICES), _opt("--threads", INTS), _output(files))


def network_args(files: Files) -> st.SearchStrategy[list[str]]:
    return _join(st.just(["network"]), st.one_of(st.sampled_from(files.specs).map(lambda s: [s]), st.just([])),
                 _opt("--alpha", FLOATS), _opt("--resolution", INTS), _opt("--as", st.sampled_from(
                     ["separable", "standard", "both"])), _opt("--batch", INTS), _opt("--dtype", DTYPES),
                 _flag("--all-layers"), _flag("--list"), _flag("--time"), _flag("--predict"), _training(),
                 _output(files))


def profile_args(files: Files) -> st.SearchStrategy[list[str]]:
    model = st.one_of(st.just(files.model), st.just(files.model), st.sampled_from(files.models))
    shapes = st.one_of(st.just(["-i", "1x3x16x16"]), st.just(["-i", "1x3x16x16"]),
                       st.lists(SHAPES, min_size=0, max_size=2).map(lambda ss: [a for s in ss for a in ("-i", s)]))
    return _join(st.just(["profile"]), model.map(lambda m: [m]), shapes,
                 _opt("--depth", INTS), _opt("--kwargs", st.sampled_from(['{"a": 1}', "[1]", "{", '{"x": [' * 50,
                                                                          "null", '{"num_classes": 3}'])),
                 _flag("--trust-pickle"), _flag("--time"), _flag("--predict"), _training(), _opt("--dtype", DTYPES),
                 _output(files))


def compare_args(files: Files) -> st.SearchStrategy[list[str]]:
    target = st.one_of(st.just([]), st.sampled_from(files.specs[:3] + files.models[:2] + ["cifar_conv"]).map(
        lambda t: [t]))
    return _join(st.just(["compare"]), target, layer_args(files, "compare").map(lambda a: a[1:]),
                 st.lists(SHAPES, max_size=1).map(lambda shapes: [a for s in shapes for a in ("-i", s)]),
                 _opt("--alpha", FLOATS), _opt("--resolution", INTS), _opt("--kwargs", st.just('{"a": 1}')))


def device_args(files: Files) -> st.SearchStrategy[list[str]]:
    return _join(st.just(["device"]), _opt("--device", DEVICES), _opt("--threads", INTS), _output(files))


def sweep_args(files: Files) -> st.SearchStrategy[list[str]]:
    lists = st.sampled_from(["8,16", "8:32:x2", "1:8:2", "8", "0", "-1", "1:10**9", "1:1000000000", "8:x", "a,b",
                             "", "16:8", "1:4:0", "1:2000:x1"])
    return _join(st.just(["sweep", "--no-time"]), _opt("--cin", lists), _opt("--cout", lists),
                 _opt("--k", st.sampled_from(["3", "1", "3,5", "0"])), _opt("--size", st.sampled_from(
                     ["8", "8,16", "0", "99999999999"])), _opt("--batch", st.sampled_from(["1", "1,2", "0"])),
                 _opt("--dtype", st.sampled_from(["float32", "float16,bfloat16", "int8", "float32,x"])),
                 _opt("--channels-last", st.sampled_from(["no", "yes", "both", "maybe"])),
                 _opt("--plot", st.sampled_from([str(files.root / "p.png"), str(files.root / "p.pdf"),
                                                 str(files.root / "no" / "p.png")])), _training(memory_limit=False),
                 _output(files))


STRATEGIES = {"layer": layer_args, "network": network_args, "profile": profile_args, "compare": compare_args,
              "device": device_args, "sweep": sweep_args}


@dataclass
class Verdict:
    ok: bool
    problem: str = ""  # traceback | exit | unclear | json | internal


def judge(args: list[str], code: int, stdout: str, stderr: str) -> Verdict:
    """The promise: no traceback, exit 0/1/2, one clear line on stderr for 1 and 2, parseable JSON for 0."""
    if "Traceback" in stderr or "Traceback" in stdout:
        return Verdict(False, "traceback")
    if code not in (0, 1, 2):
        return Verdict(False, "exit")
    if "internal error" in stderr:
        return Verdict(False, "internal")
    if code in (1, 2):
        lines = stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("dscalc: error: ") or len(lines[0]) < 20:
            return Verdict(False, "unclear")
    if code == 0:
        fmt = args[args.index("-f") + 1].lower() if "-f" in args else "table"
        output = args[args.index("-o") + 1] if "-o" in args else "-"
        if fmt == "json":
            if output != "-" and not Path(output).is_file():  # /dev/null and other non-files are written through
                return Verdict(True)
            text = stdout if output == "-" else Path(output).read_text()
            try:
                json.loads(text)
            except ValueError:
                return Verdict(False, "json")
    return Verdict(True)


def measure_once(fn, settings, label=""):
    """A stand-in for the timer (dscalc.measure.modules.measure): runs the call once, so its errors surface, and
    reports a fixed timing - the fuzz tests the boundary, not the machine."""
    from dscalc.measure.timer import Timing

    try:
        fn()
    except (RuntimeError, ValueError, TypeError) as e:
        return Timing.failed(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return Timing(1e-4, 1e-6, 5, 1, q1=1e-4, q3=1e-4)


# ------------------------------------------------------------------- hostile cases, each run as a whole process

#: the generous bounds every hostile case runs under: a case that hangs or balloons is stopped, and counted
CASE_TIMEOUT_S = 120
CASE_MEMORY_BYTES = 6 * 2**30  # address space (RLIMIT_AS): torch's import maps ~2 GiB of it


@dataclass
class Outcome:
    """What one hostile case did: its exit status, what it printed, its peak memory and its wall time."""

    code: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes: the process's own high-water RSS (VmHWM, polled; ru_maxrss where there is no /proc)
    wall: float  # seconds
    timed_out: bool = False


def hostile_modules() -> list:
    """Every tests/hostile_*.py module present (each defines FAMILY and cases(tmp)), in name order."""
    import importlib

    here = Path(__file__).parent
    return [importlib.import_module(p.stem) for p in sorted(here.glob("hostile_*.py"))]


def dscalc_script() -> str:
    """The installed `dscalc` console script of this interpreter's environment."""
    import shutil
    import sys

    return shutil.which("dscalc", path=str(Path(sys.executable).parent)) or "dscalc"


def _child_setup(streams: str, memory: int):
    """The child's standard streams as the case asks - really closed (fd 1 or 2 closed, not /dev/null) or full
    (/dev/full) - and its memory bound; runs between fork and exec."""
    import resource

    def setup() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if streams == "stdout-closed":
            os.close(1)
        elif streams == "stderr-closed":
            os.close(2)
        elif streams in ("stdout-full", "stderr-full"):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, 1 if streams == "stdout-full" else 2)
            os.close(full)

    return setup


def run_case(case, tmp: Path, timeout: float = CASE_TIMEOUT_S, memory: int = CASE_MEMORY_BYTES) -> Outcome:
    """`dscalc ARGV` of a hostile case as a whole process - its environment, streams and folder - under a time
    bound (the process group is killed past it) and a memory bound; its own peak RSS comes from os.wait4."""
    import signal
    import subprocess
    import tempfile
    import time

    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", **case.env}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen([dscalc_script(), *case.argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                             cwd=case.cwd or str(tmp), preexec_fn=_child_setup(case.streams, memory),
                             start_new_session=True)
        timed_out = False
        hwm = 0
        while True:
            hwm = max(hwm, _high_water(p.pid))
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        p.returncode = code  # reaped here: Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        # ru_maxrss would count the forked parent's pages before exec (this process, torch imported): VmHWM is
        # the exec'd process's own; it is polled every 20 ms, so growth in the last 20 ms before exit is missed
        return Outcome(code, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                       hwm or usage.ru_maxrss * 1024, wall, timed_out)


def _high_water(pid: int) -> int:
    """The peak resident memory of a running process, in bytes (0 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def problem(case, o: Outcome) -> str:
    """What a hostile case got wrong ('' = handled): a hang, a traceback, an internal error, another exit status
    than the case expects, or - on a failure with stderr open - anything but one line naming the phrase asked for."""
    if o.timed_out:
        return "timeout"
    if "Traceback" in o.stderr or "Traceback" in o.stdout:
        return "traceback"
    if "internal error" in o.stderr:
        return "internal"
    if o.code != case.expect:
        return f"exit {o.code}, expected {case.expect}"
    lines = o.stderr.splitlines()
    if case.expect in (1, 2) and case.streams not in ("stderr-closed", "stderr-full") and (
            len(lines) != 1 or not lines[0].startswith("dscalc: error: ")):
        return "unclear"
    if any("\x1b" in line or "\r" in line for line in lines):
        return "control characters on stderr"
    if case.stderr_has and case.stderr_has not in o.stderr:
        return f"stderr lacks {case.stderr_has!r}"
    return ""

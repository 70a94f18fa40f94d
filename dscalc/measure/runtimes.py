"""The runtimes a measurement runs on - torch eager, torch.compile, ONNX Runtime, LiteRT - one registry entry each:
its name, the extra that installs it, its version, how it honours --threads, the devices it runs on, and how it
builds the call to time from a torch module and its inputs. Every runtime is timed by the one protocol of
`measure.timer.measure` (warm-up, repeated blocks, median, IQR, reliability); the seconds a runtime spends building
its call (compiling, exporting, converting) are recorded apart and are never part of a latency.

Nothing heavy is imported here at module level: a runtime's libraries are imported when it builds a call."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from dscalc.errors import BadInput, RuntimeFailure
from dscalc.measure.settings import Settings, describe

#: ONNX opset of the export (torch's TorchScript exporter supports it; ONNX Runtime 1.16+ runs it)
OPSET = 17


@dataclass
class Built:
    """A runtime's call of one module on fixed inputs."""

    call: Callable[[], Any]  # one inference: what is timed
    outputs: Callable[[], list[Any]]  # one inference's outputs as numpy arrays, in torch's (NCHW) layout
    setup_s: float | None  # seconds spent building `call` (compile, export + session, conversion); None: nothing
    settings: dict[str, Any]  # the runtime's own settings, read back from it where it can say
    close: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Runtime:
    name: str
    label: str  # as people name it
    extra: str  # pip install 'dscalc[EXTRA]'
    needs: tuple[str, ...]  # the modules it imports
    devices: tuple[str, ...]  # device kinds it runs on ("cpu", "cuda")
    threads: str  # how --threads reaches it
    layouts: bool  # whether --channels-last means anything to it
    setup: str  # what its setup time is
    version: Callable[[], str]
    build: Callable[[Any, list[Any], Settings], Built]


def dist_version(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for n in names:
        with contextlib.suppress(PackageNotFoundError):
            return version(n)
    return "?"


def _torch_version() -> str:
    return dist_version("torch")


def _numpy(out: Any) -> list[Any]:
    """Every tensor of a module's output (a tensor, tuple, list or dict of them) as a float32 numpy array."""
    import torch
    from torch.utils._pytree import tree_leaves

    return [t.detach().float().cpu().numpy() for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# ------------------------------------------------------------------------------------------------ torch eager

def _eager(module: Any, inputs: list[Any], settings: Settings) -> Built:
    import torch

    return Built(lambda: module(*inputs), lambda: _numpy(module(*inputs)), None,
                 {"num_threads": _threads(), "inference_mode": torch.is_inference_mode_enabled()})


# ---------------------------------------------------------------------------------------------- torch.compile

def _compile(module: Any, inputs: list[Any], settings: Settings) -> Built:
    """One compiled module per configuration: dynamo's caches are reset first, so a sweep never reaches the
    recompile limit (past which dynamo silently runs eager), and a recompile while it is timed is an error."""
    import logging

    import torch
    import torch._dynamo

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime" on CPU builds
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = torch.compile(module, backend="inductor", mode="default", dynamic=False)
    start = time.perf_counter()
    compiled(*inputs)  # compiles here
    if settings.device.startswith("cuda"):
        torch.cuda.synchronize()
    setup = time.perf_counter() - start
    graphs = int(counters["stats"]["unique_graphs"])
    breaks = int(sum(counters["graph_break"].values()))
    if graphs == 0:
        raise RuntimeError("torch.compile produced no graph: it would run eager")
    saved = torch._dynamo.config.error_on_recompile
    torch._dynamo.config.error_on_recompile = True

    def close() -> None:
        torch._dynamo.config.error_on_recompile = saved
        torch._dynamo.reset()

    return Built(lambda: compiled(*inputs), lambda: _numpy(compiled(*inputs)), setup,
                 {"backend": "inductor", "mode": "default", "dynamic": False, "graphs": graphs,
                  "graph_breaks": breaks, "num_threads": _threads()}, close)


# ------------------------------------------------------------------------------------------------ ONNX Runtime

def export_onnx(module: Any, inputs: list[Any]) -> tuple[bytes, str]:
    """The module as an ONNX model (bytes) and the exporter that made it: torch's TorchScript-based exporter
    (fast, no extra dependency), else the torch.export-based one where onnxscript is installed."""
    import io

    import torch

    buf = io.BytesIO()
    names = [f"input{i}" for i in range(len(inputs))]
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, tuple(inputs), buf, dynamo=False,  # type: ignore[arg-type]
                              input_names=names, opset_version=OPSET, do_constant_folding=True)
            return buf.getvalue(), f"torch.onnx.export (TorchScript, opset {OPSET})"
        except Exception as legacy:
            if importlib.util.find_spec("onnxscript") is None:
                raise legacy from None
        program = torch.onnx.export(module, tuple(inputs), dynamo=True, input_names=names)
        assert program is not None
        return program.model_proto.SerializeToString(), "torch.onnx.export (dynamo)"


def _onnxruntime(module: Any, inputs: list[Any], settings: Settings) -> Built:
    """An InferenceSession of the exported module: all graph optimisations, intra-op threads as --threads, one
    inter-op thread, sequential execution, no spinning threads; the CPU execution provider, or CUDA's on a CUDA
    device."""
    import onnxruntime as ort

    start = time.perf_counter()
    model, exporter = export_onnx(module, inputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # no spinning: a session's intra-op threads spin after each run, and two sessions timed against each other
    # (compare --time's interleaved blocks) then slowed each other ~2x here (a 3x3 conv 0.59 ms alone, 1.21 ms
    # interleaved; 0.72/0.70 ms without spinning: benchmarks/bench_ort_spinning.py). The price: a tiny kernel alone
    # waits for its threads to wake (a depthwise + pointwise pair 0.15 -> 0.30 ms alone).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    cuda = settings.device.startswith("cuda")
    device_id = int(settings.device.partition(":")[2] or 0) if cuda else 0
    providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device_id})] if cuda else ["CPUExecutionProvider"]
    session = ort.InferenceSession(model, options, providers=providers)
    names = [i.name for i in session.get_inputs()]
    if cuda:
        call, outputs = _cuda_binding(session, names, module, inputs, device_id)
    else:
        call, outputs = _cpu_binding(session, names, inputs)

    setup = time.perf_counter() - start
    used = session.get_session_options()
    return Built(call, outputs, setup,
                 {"provider": session.get_providers()[0],
                  "graph_optimization_level": str(used.graph_optimization_level).rpartition(".")[2],
                  "intra_op_num_threads": used.intra_op_num_threads,
                  "inter_op_num_threads": used.inter_op_num_threads,
                  "execution_mode": str(used.execution_mode).rpartition(".")[2], "allow_spinning":
                      used.get_session_config_entry("session.intra_op.allow_spinning") != "0",
                  "exporter": exporter})


def _cpu_binding(session: Any, names: list[str], inputs: list[Any]) -> tuple[Callable[[], Any],
                                                                            Callable[[], list[Any]]]:
    """Inputs and outputs bound to arrays allocated once (no output allocated and handed to Python in the timed
    call, as the CUDA binding does: through `session.run` a pointwise 32->64 on 112², a 3.2 MB output, took 1.66x
    its bound time; smaller outputs 0.93-1.07x, within the noise - benchmarks/bench_ort_binding.py)."""
    import numpy as np
    import onnxruntime as ort

    feeds = {n: np.ascontiguousarray(x.detach().cpu().numpy()) for n, x in zip(names, inputs)}
    ys = [np.empty_like(y) for y in session.run(None, feeds)]
    binding = session.io_binding()
    # the values wrap the arrays' memory: both are kept as long as the call is
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in [*feeds.values(), *ys]]
    for n, v in zip(feeds, values):
        binding.bind_ortvalue_input(n, v)
    for o, v in zip(session.get_outputs(), values[len(feeds):]):
        binding.bind_ortvalue_output(o.name, v)
    kept = (feeds, values)

    def call() -> Any:
        session.run_with_iobinding(binding)
        return ys if kept else None

    return call, lambda: [np.asarray(y, dtype=np.float32) for y in call()]


def _cuda_binding(session: Any, names: list[str], module: Any, inputs: list[Any],
                  device_id: int) -> tuple[Callable[[], Any], Callable[[], list[Any]]]:
    """Inputs and outputs bound to CUDA tensors (no host copies in the timed call)."""
    import numpy as np
    import torch

    kinds = {torch.float32: np.float32, torch.float16: np.float16}
    expected = [t for t in _tensors(module(*inputs))]
    if any(t.dtype not in kinds for t in [*inputs, *expected]):
        raise ValueError("ONNX Runtime binds float32 and float16 CUDA tensors only")
    xs = [x.contiguous() for x in inputs]
    ys = [torch.empty_like(t).contiguous() for t in expected]
    binding = session.io_binding()
    for n, x in zip(names, xs):
        binding.bind_input(n, "cuda", device_id, kinds[x.dtype], list(x.shape), x.data_ptr())
    for o, y in zip(session.get_outputs(), ys):
        binding.bind_output(o.name, "cuda", device_id, kinds[y.dtype], list(y.shape), y.data_ptr())

    def call() -> Any:
        session.run_with_iobinding(binding)
        return ys

    return call, lambda: [y.float().cpu().numpy() for y in call()]


def _tensors(out: Any) -> list[Any]:
    import torch
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


# ------------------------------------------------------------------------------------------------------ LiteRT

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Converters write progress lines and C++ logs to stdout/stderr: dscalc's output is its report alone."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _litert(module: Any, inputs: list[Any], settings: Settings) -> Built:
    """litert-torch converts the module (NHWC inputs and outputs, LiteRT's layout: no transposes at the edges);
    ai-edge-litert's interpreter runs it with the XNNPACK delegate and --threads threads. The timed call is one
    `invoke()` on inputs set beforehand."""
    import numpy as np

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    threads = _threads()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        import litert_torch  # (once per process: its import is not part of the setup time)
        from ai_edge_litert.interpreter import Interpreter

        start = time.perf_counter()
        outs = _tensors(module(*inputs))
        nchw_in = [i for i, x in enumerate(inputs) if x.dim() == 4]
        nchw_out = [i for i, y in enumerate(outs) if y.dim() == 4]
        wrapped = litert_torch.to_channel_last_io(module, args=nchw_in, outputs=nchw_out).eval() \
            if nchw_in or nchw_out else module
        nhwc = [x.permute(0, 2, 3, 1).contiguous() if i in nchw_in else x for i, x in enumerate(inputs)]
        content = litert_torch.convert(wrapped, tuple(nhwc)).model_content()
        interpreter = Interpreter(model_content=bytes(content), num_threads=threads)
        interpreter.allocate_tensors()
    signature = interpreter.get_signature_runner()
    ins, outs_d = signature.get_input_details(), signature.get_output_details()
    in_index = [ins[n]["index"] for n in sorted(ins, key=_arg_number)]
    out_index = [outs_d[n]["index"] for n in sorted(outs_d, key=_arg_number)]
    for index, x in zip(in_index, nhwc):
        interpreter.set_tensor(index, x.detach().cpu().numpy())
    setup = time.perf_counter() - start
    delegated = any(op.get("op_name") == "DELEGATE" for op in interpreter._get_ops_details())

    def outputs() -> list[Any]:
        interpreter.invoke()
        got = [np.asarray(interpreter.get_tensor(i), dtype=np.float32) for i in out_index]
        return [g.transpose(0, 3, 1, 2) if i in nchw_out else g for i, g in enumerate(got)]

    return Built(interpreter.invoke, outputs, setup,
                 {"num_threads": threads, "delegate": "XNNPACK" if delegated else "none (reference kernels)",
                  "layout": "NHWC inputs/outputs", "converter": f"litert-torch {dist_version('litert-torch')}"})


def litert_file(path: str, settings: Settings) -> Built:
    """A ready .tflite file run as it is (no conversion): ai-edge-litert's interpreter with the XNNPACK delegate and
    --threads threads, on random inputs of each input's stored shape and dtype (integers 0 or 1: valid token ids
    and masks alike). The timed call is one `invoke()`."""
    import numpy as np

    threads = _threads()
    start = time.perf_counter()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():
        dtype = np.dtype(d["dtype"])
        if np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(d["shape"]).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            value = rng.integers(0, 2, size=d["shape"]).astype(dtype)
        else:
            value = np.zeros(d["shape"], dtype=dtype)
        interpreter.set_tensor(d["index"], value)
    setup = time.perf_counter() - start
    delegated = any(op.get("op_name") == "DELEGATE" for op in interpreter._get_ops_details())
    out_index = [d["index"] for d in interpreter.get_output_details()]

    def outputs() -> list[Any]:
        interpreter.invoke()
        return [np.asarray(interpreter.get_tensor(i)) for i in out_index]

    return Built(interpreter.invoke, outputs, setup,
                 {"num_threads": threads, "delegate": "XNNPACK" if delegated else "none (reference kernels)",
                  "layout": "the file's own", "converter": "none (the .tflite file as it is)"})


def _arg_number(name: str) -> tuple[int, str]:
    """args_10 after args_2; output_1 after output_0."""
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else 0, name)


# -------------------------------------------------------------------------------------------------- the registry

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("eager", "torch eager", "torch", ("torch",), ("cpu", "cuda"), "torch.set_num_threads", True, "",
            _torch_version, _eager),
    Runtime("compile", "torch.compile (inductor)", "torch", ("torch",), ("cpu", "cuda"),
            "torch.set_num_threads (inductor's kernels use torch's thread pool)", True, "compile", _torch_version,
            _compile),
    Runtime("onnxruntime", "ONNX Runtime", "onnx", ("onnx", "onnxruntime"), ("cpu", "cuda"),
            "SessionOptions.intra_op_num_threads (inter_op 1, sequential)", False, "export + session",
            lambda: dist_version("onnxruntime", "onnxruntime-gpu"), _onnxruntime),
    Runtime("litert", "LiteRT", "litert", ("litert_torch", "ai_edge_litert"), ("cpu",),
            "Interpreter(num_threads=...), XNNPACK delegate", False, "conversion",
            lambda: dist_version("ai-edge-litert"), _litert),
)}
DEFAULT = "eager"


def parse(text: str) -> list[str]:
    """`eager`, or several comma-separated: `eager,onnxruntime`. An unknown or repeated name is bad input."""
    names = [n.strip().lower() for n in text.split(",")]
    for n in names:
        if n not in RUNTIMES:
            shown = repr(n[:40]) if n else "an empty name"
            raise BadInput(f"unknown runtime {shown}; expected {', '.join(RUNTIMES)} (comma-separated)", "runtime")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BadInput(f"{repeated[0]} is given twice", "runtime")
    return names


def require(name: str) -> None:
    """The runtime's libraries are installed: else one line naming the extra that brings them (exit 1)."""
    entry = RUNTIMES[name]
    for module in entry.needs:
        if importlib.util.find_spec(module) is None:
            raise RuntimeFailure(f"--runtime {name} needs {module}, which is not installed: "
                                 f"pip install 'dscalc[{entry.extra}]'")


def check(names: list[str], base: Settings, channels_last: bool | None = None) -> list[Settings]:
    """One checked Settings per runtime: installed, able to run on the device, and asked nothing it ignores."""
    out = []
    for name in names:
        entry = RUNTIMES[name]
        kind = base.device.partition(":")[0]
        if kind not in entry.devices:
            raise BadInput(f"{name} runs on {' and '.join(entry.devices)} here, not on {base.device}", "runtime")
        if (base.channels_last if channels_last is None else channels_last) and not entry.layouts:
            raise BadInput(f"applies to torch's runtimes (eager, compile); {entry.label} chooses "
                           "its own layout" + (" (NHWC)" if name == "litert" else ""), "channels_last")
        require(name)
        if name == "onnxruntime" and kind == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise RuntimeFailure("--runtime onnxruntime --device cuda needs ONNX Runtime's CUDA execution "
                                     "provider: pip install onnxruntime-gpu (this one has "
                                     f"{', '.join(onnxruntime.get_available_providers())})")
        out.append(replace(base, runtime=name))
    return out


def version(name: str) -> str:
    return RUNTIMES[name].version()


def context(settings: Settings) -> dict[str, Any]:
    """The conditions of a measurement (`settings.describe`) with its runtime: name, label, version, threads."""
    entry = RUNTIMES[settings.runtime]
    return {**describe(settings), "runtime": entry.name, "runtime_label": entry.label,
            "runtime_version": entry.version(), "runtime_threads": entry.threads}


def build(module: Any, inputs: list[Any], settings: Settings) -> Built:
    """The call of `module(*inputs)` on the settings' runtime (module and inputs already on the device)."""
    return RUNTIMES[settings.runtime].build(module, inputs, settings)


def stamp(timing: Any, settings: Settings, built: Built | None = None) -> Any:
    """A Timing with the runtime that ran it: name, version, own settings, setup seconds."""
    return replace(timing, runtime=settings.runtime, runtime_version=version(settings.runtime),
                   runtime_settings=dict(built.settings) if built else {},
                   setup_s=built.setup_s if built else None)

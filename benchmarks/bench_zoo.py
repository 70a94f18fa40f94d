"""Profile a committed list of public models (benchmarks/zoo_models.py) and tabulate dscalc's totals beside
FlopCounterMode / 2 on the same model and inputs, the verdict, and the time dscalc took. Every row succeeds or
says exactly why not.

    python benchmarks/bench_zoo.py [--only NAME_PART] [--out benchmarks/results/zoo]

writes zoo.md (the table and the machine it ran on) and zoo.json; with --only, the rows it profiles replace theirs
in an existing zoo.json and the others stay. FlopCounterMode runs on the meta device where
dscalc did; where dscalc needed a real CPU run (a data-dependent model), FlopCounterMode runs on the same CPU model
with the same seeded input. A difference is explained when it is exactly the MACs of ops FlopCounterMode has no
formula for (the CPU flash-attention kernel, oneDNN's fused LSTM layer).

ONNX exports (a torchvision model exported, then profiled from the .onnx file without torch, against
FlopCounterMode on the exported torch model) and Keras models (keras.applications saved to .keras, against
FlopCounterMode around the Keras forward on the torch backend, and count_params()) have their own runners in
RUNNERS: a function (entry) -> Row.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo_models import IMAGE, MODELS, Entry  # noqa: E402


@dataclass
class Row:
    target: str
    family: str
    inputs: str
    params: int | None = None
    macs: int | None = None
    fcm_macs: int | None = None
    verdict: str = ""
    seconds: float | None = None
    how: str = ""  # meta, or a real CPU run and why


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(map(str, s))


def torch_row(entry: Entry) -> Row:
    import torch
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    from dscalc.errors import DscalcError
    from dscalc.trace import tracer, wrappers
    from dscalc.trace.source import ModelSource
    from dscalc.trace.summary import summarize

    source = ModelSource.of(entry.target, entry.kwargs)
    inputs = entry.inputs
    model = source.load("meta")
    if inputs is None:  # timm: the model's own input size
        inputs = ((1, *model.pretrained_cfg["input_size"]),)
    row = Row(entry.target, entry.family, ", ".join(_shape(s) for s in inputs))
    start = time.perf_counter()
    try:
        tr = tracer.trace(model, [tuple(s) for s in inputs], build_cpu=lambda: source.load("cpu"))
    except DscalcError as e:
        row.verdict = f"dscalc failed: {e}"
        return row
    result = summarize(tr)
    row.seconds = round(time.perf_counter() - start, 2)
    row.params, row.macs = result.totals["params"], result.totals["macs"]
    real = any("real CPU run" in n for n in tr.notes)
    row.how = "real CPU run (" + next(n for n in tr.notes if "real CPU run" in n).split(": ", 1)[1].split(";")[0] \
        + ")" if real else "meta"
    try:
        if real:
            cpu = source.load("cpu")
            args = tracer.arguments(cpu, tracer._inputs([tuple(s) for s in inputs], torch.float32, "cpu"))
        else:  # where dscalc ran: on meta (a model whose constructor needs data is built on the CPU)
            cpu = model
            device = "meta" if wrappers.on_meta(model) else "cpu"
            args = tracer.arguments(model, [torch.zeros(s, device=device) for s in inputs])
        with warnings.catch_warnings(), torch.no_grad(), FlopCounterMode(display=False) as counter:
            warnings.simplefilter("ignore")
            cpu(*args)
        row.fcm_macs = counter.get_total_flops() // 2
    except Exception as e:  # FlopCounterMode cannot run it
        row.verdict = f"FlopCounterMode failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        return row
    if row.fcm_macs == row.macs:
        row.verdict = "equal"
        return row
    unknown: dict[str, int] = {}
    for rec in tr.records:
        packet = rec.op.rsplit(".", 1)[0]
        if rec.macs and not any(str(k) == packet for k in flop_registry):
            unknown[packet] = unknown.get(packet, 0) + rec.macs
    if sum(unknown.values()) == row.macs - row.fcm_macs:
        row.verdict = "dscalc higher by exactly the ops FlopCounterMode has no formula for: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(unknown.items()))
    else:
        row.verdict = f"differs by {row.macs - row.fcm_macs:+,} (unexplained)"
    return row


def _verdict(row: Row) -> Row:
    row.verdict = "equal" if row.macs == row.fcm_macs else f"differs by {(row.macs or 0) - (row.fcm_macs or 0):+,}"
    return row


def onnx_row(entry: Entry) -> Row:
    """`onnx:torchvision:NAME`: the torchvision model exported to ONNX (random weights, torch.onnx's TorchScript
    exporter, opset 17), profiled from the file by dscalc's ONNX profiler (no torch); the reference is
    FlopCounterMode/2 on the torch model that was exported."""
    import tempfile

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dscalc.trace.source import ModelSource

    target = entry.target.removeprefix("onnx:")
    inputs = entry.inputs or IMAGE
    model = ModelSource.of(target).load("cpu").eval()
    xs = tuple(torch.randn(s) for s in inputs)
    row = Row(entry.target, entry.family, ", ".join(_shape(s) for s in inputs))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (target.split(":")[-1] + ".onnx")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, xs, str(path), opset_version=17, dynamo=False)
        start = time.perf_counter()
        result = ModelSource.of(str(path)).profile([tuple(s) for s in inputs], None)
        row.seconds = round(time.perf_counter() - start, 2)
    row.params, row.macs, row.how = result.totals["params"], result.totals["macs"], "ONNX graph"
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*xs)
    row.fcm_macs = counter.get_total_flops() // 2
    return _verdict(row)


def keras_row(entry: Entry) -> Row:
    """`keras:NAME`: keras.applications.NAME (weights=None) saved to a .keras file and profiled from it; the
    reference is FlopCounterMode/2 around the same Keras model's forward on the torch backend (the torch ops
    Keras really runs), and Keras' own count_params() for the parameters."""
    import tempfile

    from dscalc.trace.keras import import_keras

    keras = import_keras()
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dscalc.trace.source import ModelSource

    name = entry.target.removeprefix("keras:")
    inputs = entry.inputs or ((1, 224, 224, 3),)
    model = getattr(keras.applications, name)(weights=None, input_shape=inputs[0][1:])
    row = Row(entry.target, entry.family, ", ".join(_shape(s) for s in inputs))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.keras"
        model.save(path)
        start = time.perf_counter()
        result = ModelSource.of(str(path)).profile([tuple(s) for s in inputs], None)
        row.seconds = round(time.perf_counter() - start, 2)
    row.params, row.macs, row.how = result.totals["params"], result.totals["macs"], "Keras graph"
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(inputs[0]), training=False)
    row.fcm_macs = counter.get_total_flops() // 2
    row = _verdict(row)
    keras_total = result.totals["params"] + result.totals["buffers"]  # Keras counts BN's moving statistics
    row.verdict += (f"; params + buffers = count_params() {model.count_params():,}"
                    if keras_total == model.count_params() else
                    f"; params + buffers {keras_total:,} != count_params() {model.count_params():,}")
    return row


def tflite_row(entry: Entry) -> Row:
    """`tflite:torchvision:NAME` (float32) and `tflite-int8:torchvision:NAME` (int8 post-training quantization,
    litert-torch's PT2E quantizer, per-channel, calibrated on one random input): the torchvision model (random
    weights) converted with litert-torch and profiled from the .tflite file (no torch); the reference is
    FlopCounterMode/2 on the torch model that was converted."""
    import tempfile

    import litert_torch
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dscalc.trace.source import ModelSource

    kind, _, target = entry.target.partition(":")
    inputs = entry.inputs or IMAGE
    model = ModelSource.of(target).load("cpu").eval()
    xs = tuple(torch.randn(s) for s in inputs)
    row = Row(entry.target, entry.family, ", ".join(_shape(s) for s in inputs))
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / (target.split(":")[-1] + ".tflite")
        if kind == "tflite-int8":
            from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
            from litert_torch.quantize.quant_config import QuantConfig
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            prepared = prepare_pt2e(torch.export.export(model, xs).module(), quantizer)
            prepared(*xs)
            edge = litert_torch.convert(convert_pt2e(prepared, fold_quantize=False), xs,
                                        quant_config=QuantConfig(pt2e_quantizer=quantizer))
        else:
            edge = litert_torch.convert(model, xs)
        edge.export(str(path))
        start = time.perf_counter()
        result = ModelSource.of(str(path)).profile([], None)
        row.seconds = round(time.perf_counter() - start, 2)
    row.params, row.macs = result.totals["params"], result.totals["macs"]
    row.how = "TFLite flatbuffer" + (f", int8 MACs {result.totals.get('int8_macs', 0):,}" if kind == "tflite-int8"
                                     else "")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*xs)
    row.fcm_macs = counter.get_total_flops() // 2
    row = _verdict(row)
    if result.uncounted:
        row.verdict += "; uncounted: " + ", ".join(f"{k} x{v}" for k, v in sorted(result.uncounted.items()))
    return row


def hf_row(entry: Entry) -> Row:
    """`hf:MODEL_TYPE`: the model type's default configuration built without weights, profiled by dscalc at the
    inputs the configuration implies (token ids and masks int64, pixel values, raw audio); the reference is
    FlopCounterMode/2 on the same transformers model built from the same configuration on the CPU, with eager
    attention (explicit matmuls: FlopCounterMode has no formula for the CPU kernel of
    scaled_dot_product_attention that the model runs by default)."""
    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    from dscalc.trace import hf, tracer
    from dscalc.trace.source import ModelSource
    from dscalc.trace.summary import summarize

    source = ModelSource.of(entry.target, entry.kwargs)
    inputs = source.declared_inputs()
    row = Row(entry.target, entry.family, ", ".join(
        f"{getattr(s, 'name', '') + '=' if getattr(s, 'name', '') else ''}{_shape(s)}"
        f"{':' + s.dtype if getattr(s, 'dtype', '') else ''}" for s in inputs))
    start = time.perf_counter()
    tr = tracer.trace(source.load("meta"), inputs, build_cpu=lambda: source.load("cpu"))
    result = summarize(tr)
    row.seconds = round(time.perf_counter() - start, 2)
    row.params, row.macs = result.totals["params"], result.totals["macs"]
    real = any("real CPU run" in n for n in tr.notes)
    row.how = "real CPU run (.item() on meta)" if real else "meta"
    cfg = hf.config(source)
    cls = hf._model_class(transformers, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = (cls._from_config(cfg, attn_implementation="eager") if cls is not None else
                 transformers.AutoModel.from_config(cfg, attn_implementation="eager")).eval()
    feeds = {s.name: (torch.ones(s, dtype=getattr(torch, s.dtype)) if s.dtype else torch.randn(s)) for s in inputs}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**feeds)
    row.fcm_macs = counter.get_total_flops() // 2
    row = _verdict(row)
    own = sum(p.numel() for p in model.parameters())
    row.verdict += "; params = sum(p.numel())" if own == row.params else f"; params != sum(p.numel()) {own:,}"
    return row


RUNNERS: dict[str, Callable[[Entry], Row]] = {"torch": torch_row, "onnx": onnx_row, "keras": keras_row,
                                             "tflite": tflite_row, "hf": hf_row}


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = [f"torch {torch.__version__}"]
    for name in ("torchvision", "timm"):
        with contextlib.suppress(ImportError):
            versions.append(f"{name} {__import__(name).__version__}")
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, Python "
            f"{platform.python_version()}, {', '.join(versions)}, {time.strftime('%Y-%m-%d')}")


def markdown(rows: list[Row], where: str) -> str:
    lines = [f"# dscalc zoo: {len(rows)} public models", "", f"Machine: {where}", "",
             "MACs are dscalc's totals (conv + linear + matmul + attention + recurrent, bias excluded); "
             "FlopCounterMode's FLOPs are halved. Time: dscalc's trace and summary of one model.", "",
             "| model | family | inputs | params | MACs | FlopCounterMode/2 | verdict | time (s) | run |",
             "|---|---|---|---:|---:|---:|---|---:|---|"]
    for r in rows:
        cells = [r.target, r.family, r.inputs, f"{r.params:,}" if r.params is not None else "",
                 f"{r.macs:,}" if r.macs is not None else "", f"{r.fcm_macs:,}" if r.fcm_macs is not None else "",
                 r.verdict, f"{r.seconds:.2f}" if r.seconds is not None else "", r.how]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    ok = sum(r.verdict.split(";")[0] == "equal" for r in rows)
    explained = sum(r.verdict.startswith("dscalc higher by exactly") for r in rows)
    lines += ["", f"{ok} equal to FlopCounterMode/2, {explained} higher by exactly the ops it has no formula for, "
              f"{len(rows) - ok - explained} other"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="profile only the models whose target contains this")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "zoo"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for entry in MODELS:
        if args.only and args.only not in entry.target:
            continue
        try:
            row = RUNNERS[entry.runner](entry)
        except Exception as e:  # the row says why, and the others go on
            row = Row(entry.target, entry.family, "", verdict=f"failed: {type(e).__name__}: {str(e)[:160]}")
        rows.append(row)
        print(f"{row.target:55} {row.verdict[:70]:70} {row.seconds}", flush=True)
        gc.collect()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    where = machine()
    previous = out.with_suffix(".json")
    if args.only and previous.exists():  # update those rows, keep the rest in the list's order
        fresh = {r.target: r for r in rows}
        kept = {r["target"]: Row(**r) for r in json.loads(previous.read_text())["rows"]}
        kept.update(fresh)
        rows = [kept[e.target] for e in MODELS if e.target in kept]
    out.with_suffix(".md").write_text(markdown(rows, where))
    out.with_suffix(".json").write_text(json.dumps({"machine": where, "rows": [asdict(r) for r in rows]}, indent=1))


if __name__ == "__main__":
    main()

"""ONNX Runtime on the CPU: kernels (conv + batch norm + ReLU, which ORT folds into one) timed through
`session.run` - each output allocated and handed to Python inside the timed call - against dscalc's IO binding to
arrays allocated once (`runtimes._cpu_binding`), and a MobileNet-like chain whole against the sum of its kernels
alone, both ways. Each figure: the median call over 0.3 s after 3 warm-up calls, the two ways one after the other.

    python benchmarks/bench_ort_binding.py [--output benchmarks/results/ort_binding.txt]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_predict import emit  # noqa: E402  (after the path: dscalc from this checkout)


def median_call(fn, seconds: float = 0.3) -> float:
    for _ in range(3):
        fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    from torch import nn

    from dscalc.measure.runtimes import _cpu_binding, export_onnx
    from dscalc.measure.settings import cpu_model

    torch.manual_seed(0)

    def both(module: nn.Module, shape: tuple[int, ...]) -> tuple[float, float]:
        x = torch.randn(*shape)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as runtimes._onnxruntime
        options.log_severity_level = 3
        session = ort.InferenceSession(export_onnx(module.eval(), [x])[0], options,
                                       providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = {names[0]: x.numpy()}
        bound, _ = _cpu_binding(session, names, [x])
        return median_call(lambda: session.run(None, feeds)), median_call(bound)

    def cbr(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    lines = [f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; onnxruntime "
             f"{ort.__version__}", "", "| kernel | session.run | IO binding | run / binding |", "|---|---|---|---|"]
    kernels = {"depthwise 3x3, 32 x 112²": (cbr(32, 32, 3, 1, 32), (1, 32, 112, 112)),
               "pointwise 32->64, 112²": (cbr(32, 64, 1, 1), (1, 32, 112, 112)),
               "depthwise 3x3, 512 x 14²": (cbr(512, 512, 3, 1, 512), (1, 512, 14, 14)),
               "pointwise 512->512, 14²": (cbr(512, 512, 1, 1), (1, 512, 14, 14)),
               "3x3 conv 64->64, 56²": (cbr(64, 64, 3, 1), (1, 64, 56, 56))}
    for name, (layers, shape) in kernels.items():
        run, bound = both(nn.Sequential(*layers), shape)
        lines.append(f"| {name} | {run * 1e6:.1f} µs | {bound * 1e6:.1f} µs | {run / bound:.2f}x |")
    parts, c, size = [(nn.Sequential(*cbr(3, 32, 3, 2)), (1, 3, 224, 224))], 32, 112
    for cout, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (1024, 2)]:
        parts.append((nn.Sequential(*cbr(c, c, 3, stride, c)), (1, c, size, size)))
        size //= stride
        parts.append((nn.Sequential(*cbr(c, cout, 1, 1)), (1, c, size, size)))
        c = cout
    alone = [both(m, s) for m, s in parts]
    whole = both(nn.Sequential(*[m for m, _ in parts]), (1, 3, 224, 224))
    for i, way in enumerate(("session.run", "IO binding")):
        total = sum(a[i] for a in alone)
        lines.append(f"\nMobileNet-like chain ({len(parts)} kernels), {way}: whole {whole[i] * 1e3:.2f} ms, "
                     f"its kernels alone {total * 1e3:.2f} ms, whole / alone {whole[i] / total:.2f}")
    emit(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

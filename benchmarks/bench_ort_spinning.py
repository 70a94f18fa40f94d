"""Why ONNX Runtime sessions run without spinning threads (dscalc/measure/runtimes.py): one 3x3 conv and its
separable pair, timed alone (`time_layer`) and against each other in interleaved blocks (`time_against`, as
`compare --time` does), with the intra-op threads spinning (ONNX Runtime's default) and not (dscalc's setting).

    python benchmarks/bench_ort_spinning.py [--rounds 2]

With spinning, two sessions timed against each other slow each other; without it, a kernel measures the same
alone and interleaved. Results: benchmarks/results/ort_spinning.txt.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def spinning(on: bool) -> None:
    """Make dscalc's sessions spin (ONNX Runtime's default) or not (dscalc's), by the one option it sets."""
    import onnxruntime as ort

    original = getattr(ort, "_dscalc_original_options", ort.SessionOptions)
    ort._dscalc_original_options = original  # type: ignore[attr-defined]

    class Options(original):  # type: ignore[misc, valid-type]
        def add_session_config_entry(self, key: str, value: str) -> None:
            spin = key == "session.intra_op.allow_spinning"
            super().add_session_config_entry(key, ("1" if on else "0") if spin else value)

    ort.SessionOptions = Options


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ort_spinning.txt")
    args = ap.parse_args()

    from dscalc.cost.kinds import separable_of
    from dscalc.cost.layers import conv
    from dscalc.measure.ceilings import machine_load
    from dscalc.measure.modules import time_against, time_layer
    from dscalc.measure.settings import Settings, configured

    settings = Settings(runtime="onnxruntime")
    c = separable_of(conv(128, 128, 3, 28, padding=1, batch=1, name="k3 128->128 28²"))
    assert c is not None
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load per CPU at start "
             f"{machine_load():.2f}; runtime onnxruntime, {c.original.name} and its depthwise + pointwise pair", "",
             "| spinning | round | conv alone | conv interleaved | pair interleaved | dw + pw alone | "
             "speedup interleaved | speedup alone |", "|---|---|---|---|---|---|---|---|"]
    with configured(settings):
        for on in (True, False):
            spinning(on)
            for r in range(args.rounds):
                alone = time_layer(c.original, settings).median
                t_std, t_pair, ratio = time_against(c.original, c.depthwise, c.pointwise, settings)
                parts = time_layer(c.depthwise, settings).median + time_layer(c.pointwise, settings).median
                lines.append(f"| {'on (ORT default)' if on else 'off (dscalc)'} | {r + 1} | {1e3 * alone:.3f} ms | "
                             f"{1e3 * t_std.median:.3f} ms | {1e3 * t_pair.median:.3f} ms | {1e3 * parts:.3f} ms | "
                             f"{ratio.median if ratio else 0:.2f}x | {alone / parts:.2f}x |")
                print(lines[-1], flush=True)
    lines.append(f"\nload per CPU at the end: {machine_load():.2f}")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

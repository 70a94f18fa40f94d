"""Peak memory of `dscalc profile` on Keras files, before (Keras' load_model: every weight built, initialised and
read) and after (the configuration alone, weights with shapes and no values), each run as a whole process.

    python benchmarks/bench_keras_memory.py [--reps 3] [--before REV] [--out benchmarks/results/keras_memory.txt]

Models, all written here:
- small: the seed study's CIFAR-10 separable network (227,850 trainable + 2,688 BN statistics), saved by Keras;
- 500M: Dense 20,000 -> 25,000 (500,025,000 weights, 2 GB as float32) with a valid model.weights.h5 whose datasets
  are chunked and never written (HDF5 fill value: a 500M-weight archive of a few KB that Keras loads);
- the 20000x20000 conv of issue 23 (3.6e9 weights, 14.4 GB; config only) and the config.json zip bomb
  (tests/hostile_keras.py).
"Before" is dscalc at REV (default: the parent of the commit that added dscalc/trace/keras_file.py), exported with
`git archive`; every run is bounded by `prlimit --as` (a run that hits it shows as "limit"). Peak RSS is the
child's ru_maxrss (RUSAGE_CHILDREN of a small wrapper process); the median of --reps runs, before and after
alternated.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hostile_keras import layer, sequential, wide_conv, write_keras, zip_bomb  # noqa: E402

LIMIT = 12_000_000_000  # address space of one run (torch reserves a few GB of it at import)
WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
           "stderr=subprocess.PIPE, text=True); sys.stderr.write(r.stderr[-300:]); "
           "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
CLI = "import sys; from dscalc.cli import main; main(sys.argv[1:])"


def dense_500m(path: Path) -> Path:
    """Dense 20,000 -> 25,000 with a model.weights.h5 in Keras 3's layout (layers/dense/vars/0, 1) whose datasets
    are never written: HDF5 returns their fill value (0), and the archive stays a few KB."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        variables = f.create_group("layers/dense/vars")
        variables.attrs["name"] = "dense"
        variables.create_dataset("0", shape=(20_000, 25_000), dtype="f4", chunks=(1_000, 1_000), compression="gzip")
        variables.create_dataset("1", shape=(25_000,), dtype="f4", chunks=(25_000,), compression="gzip")
        f.create_group("vars").attrs["name"] = "sequential"
    config = sequential(layer("Dense", name="dense", units=25_000), shape=(None, 20_000))
    return write_keras(path, config, weights=buffer.getvalue())


def cifar_small(path: Path) -> Path:
    """The CIFAR-10 separable network of tests/test_keras.py, built and saved by Keras in a child process."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from test_keras import CIFAR; "
              f"namespace = {{}}; exec(CIFAR, namespace); namespace['cifar']('separable').save({str(path)!r})")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    return path


def export(rev: str, folder: Path) -> Path:
    """dscalc as it was at `rev` (git archive), for the 'before' runs."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "dscalc"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def default_before() -> str:
    added = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--",
                            "dscalc/trace/keras_file.py"], check=True, capture_output=True, text=True).stdout.split()
    return f"{added[-1]}^" if added else "HEAD"


def run(code: Path, argv: list[str]) -> tuple[int, float, str]:
    """(exit status, peak RSS in MB, stderr tail) of `dscalc ARGV` with `code` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = ["prlimit", f"--as={LIMIT}", sys.executable, "-c", WRAPPER, sys.executable, "-c", CLI, *argv]
    # from a neutral folder: `python -c` puts the current folder first on the path, ahead of PYTHONPATH's dscalc
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=os.sep)
    status, kib = r.stdout.split()
    return int(status), int(kib) * 1024 / 1e6, r.stderr.strip().splitlines()[-1:][0] if r.stderr.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--before", default=None, help="the git revision measured as 'before'")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "keras_memory.txt"))
    args = parser.parse_args()
    before_rev = args.before or default_before()
    tmp = Path(tempfile.mkdtemp(prefix="dscalc-keras-mem-"))
    try:
        before = export(before_rev, tmp / "before")
        models = {
            "small: CIFAR-10 separable, 230,538 weights (saved by Keras)": (cifar_small(tmp / "cifar.keras"),
                                                                           "1x32x32x3"),
            "500M: Dense 20000->25000, 500,025,000 weights (valid weights file)": (dense_500m(tmp / "dense.keras"),
                                                                                   "1x20000"),
            "20000x20000 conv, 3,600,020,000 weights (config only)": (write_keras(tmp / "wide.keras", wide_conv()),
                                                                      "1x8x8x20000"),
            "config.json zip bomb, 300 MB of spaces (~300 KB archive)": (zip_bomb(tmp / "bomb.keras"), "1x8x8x3"),
        }
        sizes = {name: path.stat().st_size for name, (path, _) in models.items()}
        lines = [f"dscalc profile on .keras files: peak RSS (MB, median of {args.reps}, before/after alternated)",
                 f"machine: {platform.machine()} {os.cpu_count()} CPUs, {_memory()}, load average "
                 f"{os.getloadavg()[0]:.1f} at the start (shared with other jobs), Python "
                 f"{platform.python_version()}, KERAS_BACKEND {os.environ.get('KERAS_BACKEND', 'unset (torch)')}",
                 f"before: dscalc at {before_rev} ({_short(before_rev)}); after: this checkout ({_short('HEAD')}); "
                 f"each run under prlimit --as={LIMIT:,}", ""]
        header = f"{'model':<68} {'file':>10} {'before':>16} {'after':>16}"
        lines += [header, "-" * len(header)]
        for name, (path, shape) in models.items():
            argv = ["profile", str(path), "-i", shape, "-f", "json"]
            results: dict[str, list[tuple[int, float, str]]] = {"before": [], "after": []}
            for _ in range(args.reps):
                results["before"].append(run(before, argv))
                results["after"].append(run(ROOT, argv))
            cells = [_cell(results[k]) for k in ("before", "after")]
            lines.append(f"{name:<68} {sizes[name]:>10,} {cells[0]:>16} {cells[1]:>16}")
            print(lines[-1], flush=True)
            for k in ("before", "after"):
                message = results[k][-1][2]
                if results[k][-1][0] != 0 and message:
                    lines.append(f"    {k}: {message[:150]}")
        lines += ["", "cell: median peak MB (exit status); 'limit' = the run hit the address-space bound"]
        text = "\n".join(lines) + "\n"
        print(text)
        Path(args.out).write_text(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cell(runs: list[tuple[int, float, str]]) -> str:
    peak = statistics.median(p for _, p, _ in runs)
    codes = sorted({c for c, _, _ in runs})
    limited = any("MemoryError" in m or "memory" in m.lower() or "allocate" in m.lower() for _, _, m in runs)
    return f"{peak:,.0f} ({'/'.join(map(str, codes))}{', limit' if limited else ''})"


def _short(rev: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True,
                          text=True).stdout.strip()


def _memory() -> str:
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        return f"{kib / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration):
        return "RAM unknown"


if __name__ == "__main__":
    main()

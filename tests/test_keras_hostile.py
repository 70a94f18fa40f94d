"""Hostile Keras files (issue 23, tests/hostile_keras.py): each one handled in one line with the documented exit
status, the costs of configurations declaring billions of weights worked by hand, and the peak memory of the
process that handles them bounded far below what their weights or their inflated config.json would take.

Peak memory is the child's ru_maxrss (RUSAGE_CHILDREN of a small wrapper process), a bound with a wide margin,
not a timing: importing Keras on torch alone takes about 1 GB here, the 20000x20000 conv's weights 14.4 GB, the
zip bomb's config.json 300 MB."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
from conftest import SCRIPT, run_in_process
from hostile_keras import WIDE, cases, write_keras

if importlib.util.find_spec("keras") is None or importlib.util.find_spec("h5py") is None:
    pytest.skip("keras (and h5py) is not installed", allow_module_level=True)

#: the bound on any one hostile run: Keras + torch imported (~1 GB), well under a tenth of the wide conv's weights
PEAK_BYTES = 1_500_000_000

# Conv2D 20,000 -> 20,000, 3x3, same, on 1x8x8: weights 9 * 20,000^2 = 3,600,000,000 plus 20,000 biases;
# MACs 8*8 positions * 9 * 20,000 * 20,000 = 230,400,000,000 (Keras' count_params() is the same kernel + bias)
WIDE_PARAMS = 9 * WIDE * WIDE + WIDE
WIDE_MACS = 8 * 8 * 9 * WIDE * WIDE


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_keras")
    return folder, {c.name: c for c in cases(folder)}


CASE_NAMES = [
    "a .keras config declaring a 20000x20000 conv (14.4 GB of weights), no weights file",
    "an .h5 config declaring a 20000x20000 conv, no weights group",
    "a 20000x20000 conv whose model.weights.h5 is garbage (the weights are never read)",
    "Normalization over 10^9 features (its build computes with its 8 GB of statistics)",
    "config.json zip bomb: 300 MB of spaces in a ~300 KB archive",
    "zip header lies: config.json declared 100 bytes, inflates to 300 MB",
    "zip header lies: config.json declared 1 MB (under the cap), inflates to 300 MB",
    "a truncated .keras archive (half of it)",
    "a .keras archive with corrupted config.json data",
    "a .keras archive without config.json",
    "config.json nested 100,000 deep",
    "config.json that is not UTF-8",
    "config.json that is not JSON",
    "an unknown layer class",
    "a Lambda layer with marshalled code (safe mode)",
    "a class from a module outside Keras (os.system)",
    "an .h5 with a legacy Lambda layer (safe mode)",
    "an .h5 without model_config (weights only)",
    "an .h5 whose model_config is 17 MB",
    "an .h5 with an HDF5 signature and nothing valid after it",
]


def test_the_case_list_is_complete(hostile):
    assert sorted(hostile[1]) == sorted(CASE_NAMES)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_hostile_file_is_handled_in_one_line(hostile, name):
    folder, by_name = hostile
    case = by_name[name]
    r = run_in_process(*case.argv, "-f", "json")
    assert r.code == case.expect, (name, r.stderr)
    assert "Traceback" not in r.stderr
    if case.expect:
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("dscalc: error: MODEL: "), r.stderr
        assert case.stderr_has in r.stderr, r.stderr
        assert r.stdout == ""
    else:
        totals = json.loads(r.stdout)["totals"]
        if "20000x20000" in name:
            assert (totals["params"], totals["total_params"], totals["macs"]) == (WIDE_PARAMS, WIDE_PARAMS, WIDE_MACS)
        else:  # Normalization over 10^9 features: mean and variance (10^9 each) and a scalar count, non-trainable
            assert (totals["buffers"], totals["total_params"], totals["params"]) == (2 * 10**9 + 1,) * 2 + (0,)
    assert not (folder / "lambda_ran").exists()  # the lambdas' marshalled code never ran


#: runs `dscalc ARGV` and prints its exit status and its peak resident KiB: a small process in between, because a
#: child's ru_maxrss starts at its parent's size when it is forked (this test process has imported Keras)
_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.PIPE, text=True); sys.stderr.write(r.stderr); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _peak(argv: list[str]) -> tuple[int, int, str]:
    """(exit status, peak resident bytes of that process alone, stderr) of `dscalc ARGV`."""
    import sys

    r = subprocess.run([sys.executable, "-c", _WRAPPER, SCRIPT, *argv], capture_output=True, text=True)
    code, kib = r.stdout.split()
    return int(code), int(kib) * 1024, r.stderr  # Linux: ru_maxrss in KiB


@pytest.mark.parametrize("name", [
    "a .keras config declaring a 20000x20000 conv (14.4 GB of weights), no weights file",
    "an .h5 config declaring a 20000x20000 conv, no weights group",
    "Normalization over 10^9 features (its build computes with its 8 GB of statistics)",
    "config.json zip bomb: 300 MB of spaces in a ~300 KB archive",
    "zip header lies: config.json declared 1 MB (under the cap), inflates to 300 MB",
])
def test_peak_memory_does_not_grow_with_what_the_file_declares(hostile, name):
    case = hostile[1][name]
    code, peak, stderr = _peak(case.argv)
    assert code == case.expect, stderr
    assert peak < PEAK_BYTES, f"{name}: {peak:,} bytes"


def test_a_refused_archive_is_refused_before_keras_is_imported(hostile):
    """The bomb and the lying header are refused by the archive's own bounds: the process stays a fraction of the
    300 MB that config.json inflates to (Keras + torch alone would be ~1 GB)."""
    for name in ("config.json zip bomb: 300 MB of spaces in a ~300 KB archive",
                 "zip header lies: config.json declared 100 bytes, inflates to 300 MB"):
        code, peak, stderr = _peak(hostile[1][name].argv)
        assert code == 2 and peak < 300_000_000, (name, peak, stderr)


def test_the_weights_file_is_never_read(tmp_path):
    """A real model's .keras archive with its weights, without them, and with garbage in their place: the same
    profile (dscalc costs the configuration), and the same counts as Keras' own count_params() and by hand."""
    import zipfile

    from dscalc.trace.keras import import_keras

    keras = import_keras()
    x = inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = x + keras.layers.Conv2D(8, 1)(x)  # `+` is a keras.ops operation in the graph, not a layer (ConvNeXt has them)
    x = keras.layers.SeparableConv2D(16, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    model.save(tmp_path / "full.keras")
    with zipfile.ZipFile(tmp_path / "full.keras") as z:
        config = z.read("config.json")
    write_keras(tmp_path / "bare.keras", config)
    write_keras(tmp_path / "garbage.keras", config, weights=b"garbage" * 1000)
    runs = [run_in_process("profile", str(tmp_path / f"{n}.keras"), "-i", "1x16x16x3", "-f", "json")
            for n in ("full", "bare", "garbage")]
    assert [r.code for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    docs = [json.loads(r.stdout) for r in runs]
    assert docs[0]["rows"] == docs[1]["rows"] == docs[2]["rows"]
    assert docs[0]["totals"] == docs[1]["totals"] == docs[2]["totals"]
    assert docs[0]["totals"]["total_params"] == model.count_params()
    # by hand: conv 3*8*9 + 8 = 224; BN 4*8 = 32 (16 of them buffers); 1x1 conv 8*8 + 8 = 72; separable 8*9 + 8*16
    # + 16 = 216; Dense 16*10 + 10 = 170: 714 weights, 698 params + 16 buffers
    assert (docs[0]["totals"]["params"], docs[0]["totals"]["buffers"]) == (698, 16)


def test_no_uninitialised_weight_is_left_for_keras_to_initialise_later(hostile):
    """Keras initialises every variable left uninitialised when a StatelessScope closes: the wide conv's weights
    must not stay on that list after dscalc has costed it (a library caller would get 14.4 GB at its next scope)."""
    from keras.src.backend.common import global_state

    case = hostile[1]["a .keras config declaring a 20000x20000 conv (14.4 GB of weights), no weights file"]
    assert run_in_process(*case.argv).code == 0
    pending = global_state.get_global_attribute("uninitialized_variables") or []
    assert not [v for v in pending if tuple(v.shape) == (3, 3, WIDE, WIDE)]

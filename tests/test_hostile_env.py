"""Hostile environments (issue 23, items 3-8), each case a whole `dscalc` process with its streams really closed or
full, under a time and memory bound (fuzz_cli.run_case): the exit status the README documents, one line on stderr
(escaped), never a traceback or an internal error - and what each item promises beyond that (the report written,
nothing replaced, no temporary file left, the raw string kept in JSON). The last test runs every case of every
tests/hostile_*.py module present the same way."""

from __future__ import annotations

import json
from pathlib import Path

import hostile_env
import pytest
from fuzz_cli import hostile_modules, problem, run_case

#: every case of every hostile module, with the family it belongs to (collected once; files are made per family)
MODULES = {m.FAMILY: m for m in hostile_modules()}
_made: dict[str, tuple[Path, dict]] = {}
_outcomes: dict[tuple[str, str], object] = {}


def _family(family: str, tmp_path_factory) -> tuple[Path, dict]:
    if family not in _made:
        tmp = tmp_path_factory.mktemp(f"hostile-{family}")
        _made[family] = (tmp, {c.name: c for c in MODULES[family].cases(tmp)})
    return _made[family]


def _names(module) -> list[str]:
    """The case names of a module, read from a scratch folder at collection time (its files are made again)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return [c.name for c in module.cases(Path(scratch) / "cases")]


@pytest.fixture(scope="session")
def outcome(tmp_path_factory):
    """The outcome of one case (run once per session, shared by the item tests and the sweep below)."""

    def get(name: str, family: str = hostile_env.FAMILY):
        tmp, cases = _family(family, tmp_path_factory)
        if (family, name) not in _outcomes:
            _outcomes[(family, name)] = run_case(cases[name], tmp)
        return cases[name], _outcomes[(family, name)], tmp

    return get


def handled(outcome, name: str):
    case, o, tmp = outcome(name)
    assert problem(case, o) == "", (name, o.code, o.stderr[-500:])
    return o, tmp


# --------------------------------------------------------------------------------- item 3: standard streams

def test_a_closed_or_full_stdout_is_one_line_exit_1(outcome):
    for name in ("stdout closed, report to stdout", "stdout full (/dev/full)"):
        o, _ = handled(outcome, name)
        assert o.code == 1 and o.stderr.count("\n") == 1 and "cannot print the report" in o.stderr


def test_output_file_is_written_with_stdout_closed(outcome):
    o, tmp = handled(outcome, "stdout closed, --output FILE")
    assert json.loads((tmp / "out_closed.json").read_text())["command"] == "layer"
    # the model's import prints nothing into the report either (fd 1 is /dev/null, not the report's file)
    o, tmp = handled(outcome, "stdout closed, profile --output FILE (a model that loads quietly)")
    report = (tmp / "profile_closed.txt").read_text()
    assert "net.py: 1x3x8x8" in report and report.count("net.py: 1x3x8x8") == 1


def test_a_closed_stderr_keeps_the_report_and_the_exit_status(outcome):
    o, _ = handled(outcome, "stderr closed, report still printed")
    assert o.code == 0 and "standard 3x3" in o.stdout
    for name in ("stderr closed, bad input still exits 2", "stderr full, bad input still exits 2",
                 "stdout closed, bad input: one line, exit 2"):
        assert handled(outcome, name)[0].code == 2


# ------------------------------------------------------------------------ item 4: shapes torch cannot address

def test_inputs_past_what_torch_addresses_are_bad_input(outcome):
    # 1*3*(2**31-1)**2 = 1.38e19 elements > 2**59 (2**63 bytes at 16 bytes an element); 2**100 likewise; both
    # used to reach torch ("Storage size calculation overflowed")
    for name in ("--input 1x3x2147483647x2147483647", "--input of 100 dimensions of 2",
                 "compare --input past 2**59 elements"):
        assert handled(outcome, name)[0].code == 2


def test_shape_limits_at_the_boundary_without_torch():
    from dscalc.cost.parse import MAX_ELEMENTS, MAX_RANK, shape
    from dscalc.errors import BadInput

    assert shape("x".join(["2"] * MAX_RANK)) == (2,) * MAX_RANK
    assert shape(f"1x{2**29}x{2**30}") == (1, 2**29, 2**30)  # exactly 2**59 elements: the most allowed
    assert MAX_ELEMENTS * 16 == 2**63  # complex128 is 16 bytes: 2**59 of them is the int64 byte count's limit
    for bad in ("x".join(["1"] * (MAX_RANK + 1)), f"2x{2**29}x{2**30}"):
        with pytest.raises(BadInput):
            shape(bad)


# --------------------------------------------------------------------------------------------- item 5: cache

@pytest.mark.parametrize("name", ["device cache nested 100,000 deep",
                                  "device cache: negative bandwidth, a text rate, zero launch",
                                  "device cache: not JSON"])
def test_a_bad_cache_is_measured_again_and_named(outcome, name):
    o, tmp = handled(outcome, name)
    case = outcome(name)[0]
    path = Path(case.env["XDG_CACHE_HOME"]) / "dscalc" / "device.json"
    assert str(path) in o.stderr and "measuring again" in o.stderr  # the file is named, the re-measure said
    assert "GFLOP/s" in o.stdout and "-1.0" not in o.stdout
    data = json.loads(path.read_text())  # rewritten whole, the bad entry gone, the new one valid
    assert data["version"] == 2 and len(data) == 2 and all(v["bandwidth"] > 0 for k, v in data.items()
                                                            if k != "version")


def test_a_failed_cache_write_is_not_claimed_and_leaves_no_temp_file(outcome):
    o, tmp = handled(outcome, "cache folder is a file (write fails)")
    assert "cannot write the cache" in o.stderr
    assert "cached in" not in o.stdout and "not cached" in o.stdout
    assert not list(tmp.rglob("*.tmp"))


def test_a_calibration_entry_with_nan_or_negative_rates_is_not_used(outcome):
    o, tmp = handled(outcome, "calibration cache: NaN factor, negative rates")
    assert "calibration.json" in o.stderr and "is invalid" in o.stderr
    assert "nan" not in o.stdout.lower()


def test_a_shortened_measurement_is_cached_under_its_own_key_and_marked(outcome, monkeypatch):
    o, tmp = handled(outcome, "device under DSCALC_MAX_RUN_TIME (cached apart, marked)")
    assert json.loads(o.stdout)["max_run_time"] == 0.01  # marked where shown
    case = outcome("device under DSCALC_MAX_RUN_TIME (cached apart, marked)")[0]
    keys = [k for k in json.loads((Path(case.env["XDG_CACHE_HOME"]) / "dscalc" / "device.json").read_text())
            if k != "version"]
    assert keys and all(k.endswith(":max-run-0.01s") for k in keys)
    # a full run never reads it; a run shortened as much does
    from dscalc.measure import ceilings

    path = Path(case.env["XDG_CACHE_HOME"]) / "dscalc" / "device.json"
    data = json.loads(path.read_text())
    data[keys[0]]["load"] = 0.1  # as if measured on a quiet machine (a busy one's figures are never reused)
    path.write_text(json.dumps(data))
    monkeypatch.setenv("XDG_CACHE_HOME", case.env["XDG_CACHE_HOME"])
    threads = int(keys[0].split(":")[2].rstrip("t"))
    monkeypatch.delenv("DSCALC_MAX_RUN_TIME", raising=False)
    assert ceilings.load_cached("cpu", threads) is None
    monkeypatch.setenv("DSCALC_MAX_RUN_TIME", "0.01")
    cached = ceilings.load_cached("cpu", threads)
    assert cached is not None and cached.max_run_time == 0.01


def test_every_cached_value_is_checked(tmp_path, monkeypatch, capsys):
    # in process: each bad value alone makes the entry absent, and says so naming the file
    from dscalc.measure import calibrate, ceilings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    good = ceilings.Ceilings("cpu", "Test CPU", {"float32": 1e11}, 1e10, 5e-6, 1.7e9, "2", 1, 0.1)
    assert ceilings.Ceilings.from_dict(good.to_dict()) == good
    for field, bad in [("bandwidth", -1.0), ("bandwidth", float("inf")), ("bandwidth", float("nan")),
                       ("launch", 0), ("launch", "fast"), ("peak_flops", {"float32": -1e9}), ("peak_flops", {}),
                       ("threads", 1.5), ("threads", True), ("load", float("nan")), ("name", ["x"])]:
        with pytest.raises(ceilings.BadEntry):
            ceilings.Ceilings.from_dict({**good.to_dict(), field: bad})
    from dscalc.measure.predict import Calibration, KernelModel

    cal = Calibration("cpu", "Test CPU", 1, "float32", False, "eager", "2", 1.7e9, 90.0, 1e11,
                      {"standard": KernelModel("standard", 1e-5, 1e-10, 1e-9, 10, 0.05)}, 0.1)
    assert calibrate.checked(cal.to_dict()) == cal
    for patch in [{"in_network": float("nan")}, {"in_network": 0}, {"peak_flops": -1e9}, {"threads": 0},
                  {"models": {"standard": {**cal.models["standard"].to_dict(), "flop_per_s": -1e9}}},
                  {"models": {"standard": {**cal.models["standard"].to_dict(), "fixed_s": "1"}}},
                  {"models": []}, {"seconds": float("inf")}]:
        with pytest.raises(ceilings.BadEntry):
            calibrate.checked({**cal.to_dict(), **patch})


# ------------------------------------------------------------------------------------ item 6: output hygiene

def test_control_characters_from_a_spec_are_escaped_in_tables_and_kept_in_json(outcome, tmp_path):
    o, tmp = handled(outcome, "spec with ESC sequences in names (table)")
    assert "\x1b" not in o.stdout and "\r" not in o.stdout
    assert "\\x1b[2J\\x1b[Hpwned" in o.stdout and "a\\x1b[31mred\\x0drow\\x0anext" in o.stdout
    from conftest import run_in_process

    data = json.loads(run_in_process("network", str(tmp / "esc.yaml"), "-f", "json").stdout)
    assert data["network"] == "\x1b[2J\x1b[Hpwned"  # JSON keeps the raw string (json escapes it as \u001b)
    md = run_in_process("network", str(tmp / "esc.yaml"), "-f", "markdown").stdout
    assert "\x1b" not in md


def test_errors_escape_and_echo_at_most_a_few_short_keys(outcome):
    o, _ = handled(outcome, "spec with ESC sequences in a layer type (error)")
    assert "\x1b" not in o.stderr and "\x07" not in o.stderr
    o, _ = handled(outcome, "/etc/shadow-like file as a spec (500 keys)")
    assert len(o.stderr) < 300 and "$6$" not in o.stderr
    o, _ = handled(outcome, "/etc/shadow-like file as a spec (raw lines)")
    assert len(o.stderr) < 300 and "$6$" not in o.stderr and "user" not in o.stderr


def test_the_one_escape():
    from dscalc.errors import printable

    assert printable("a\x1b[2Jb\x9b\u202e\x00\tc\nd") == "a\\x1b[2Jb\\x9b\\u202e\\x00\\x09c\\x0ad"
    assert printable("x\ny", keep_newlines=True) == "x\ny"
    assert printable("MobileNet 3x3 ²×·µ█ é 中") == "MobileNet 3x3 ²×·µ█ é 中"  # printable text unchanged


# ----------------------------------------------------------------------------------------- item 7: --output

@pytest.mark.parametrize("name", ["--output is the model file", "--output is a hard link of the spec",
                                  "--output is the spec, compare"])
def test_output_that_is_an_input_file_is_refused_and_the_input_kept(outcome, name):
    o, tmp = handled(outcome, name)
    assert (tmp / "net.py").read_text() == hostile_env.NET_PY
    assert (tmp / "spec.yaml").read_text() == hostile_env.SPEC


def test_output_names_the_file_system_accepts(outcome):
    o, tmp = handled(outcome, "--output of 255 characters")
    assert ("r" * 250 + ".json").__len__() == 255 and "tiny" in (tmp / ("r" * 250 + ".json")).read_text()
    assert handled(outcome, "--output of 256 characters")[0].code == 2
    assert not list(tmp.glob(".dscalc-*"))  # no temporary file left beside it


def test_output_directories(outcome):
    for name in ("--output newdir/ (trailing slash)", "--output an existing directory",
                 "--output in a missing directory"):
        o, tmp = handled(outcome, name)
        assert o.code == 2
    assert not (tmp / "newdir").exists()


# ------------------------------------------------------------------------- item 8: hub models, FILE:Name

def test_hub_kwargs_that_load_weights_are_refused(outcome):
    for name in ("torchvision --kwargs weights=DEFAULT", "torchvision --kwargs weights_backbone",
                 "timm --kwargs pretrained=true"):
        assert handled(outcome, name)[0].code == 2


def test_a_name_that_is_not_a_model_and_a_missing_model_package(outcome):
    o, _ = handled(outcome, "net.py:torch (a module, not a model)")
    assert "--kwargs" not in o.stderr
    o, _ = handled(outcome, "timm missing")
    assert o.code == 1


# ---------------------------------------------------------------- every hostile case of every family present

@pytest.mark.parametrize("family,name", [(f, n) for f, m in MODULES.items() for n in _names(m)])
def test_every_hostile_case_is_handled(outcome, family, name):
    case, o, _ = outcome(name, family)
    assert problem(case, o) == "", (family, name, o.code, o.stderr[-500:])

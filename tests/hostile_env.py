"""Hostile environments and inputs around the files (issue 23, items 3-8): closed and full standard streams,
--input shapes torch cannot address, corrupted and unwritable caches, --output oddities, control characters in
spec files, a /etc/shadow-like file given as a spec, and --kwargs that would download weights. Every file is built
here under `tmp`; nothing is downloaded. Run by tests/test_hostile_env.py and benchmarks/bench_fuzz.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hostile import Case

FAMILY = "env"

LAYER = ["layer", "--k", "3", "--cin", "8", "--cout", "16", "--size", "8"]
NET_PY = "from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n"
SPEC = "name: tiny\ninput: [3, 8, 8]\nlayers:\n  - conv: {filters: 4, k: 3}\n  - bn\n  - relu\n"
#: a spec whose name and a layer name carry ESC sequences (clear the screen, home the cursor, paint red, CR)
ESC_SPEC = ('name: "\\e[2J\\e[Hpwned"\ninput: [3, 8, 8]\nlayers:\n'
            '  - conv: {filters: 4, k: 3, name: "a\\e[31mred\\rrow\\nnext"}\n')


def _fixed_ceilings(device_name, threads: int, torch_version: str) -> dict:
    """A valid ceilings entry (the tests' fixed figures), keyed as dscalc keys it for this CPU."""
    return {f"cpu:{device_name('cpu', threads)}:{threads}t:torch-{torch_version}": {
        "device": "cpu", "name": device_name("cpu", threads), "peak_flops": {"float32": 1e11},
        "bandwidth": 1e10, "launch": 5e-6, "measured_at": 1.7e9, "torch": torch_version, "threads": threads,
        "load": 0.1}}


def _cache(root: Path, device: dict | str | None = None, calibration: dict | str | None = None) -> dict[str, str]:
    """A cache folder holding these files (a dict is written as JSON, a str as it is), as XDG_CACHE_HOME."""
    (root / "dscalc").mkdir(parents=True, exist_ok=True)
    from dscalc.measure import calibrate, ceilings

    for name, content, version in (("device.json", device, ceilings.CACHE_VERSION),
                                   ("calibration.json", calibration, calibrate.CACHE_VERSION)):
        if content is not None:
            text = content if isinstance(content, str) else json.dumps({"version": version, **content})
            (root / "dscalc" / name).write_text(text)
    return {"XDG_CACHE_HOME": str(root)}


def cases(tmp: Path) -> list[Case]:
    import torch

    from dscalc.measure.settings import device_name

    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "net.py").write_text(NET_PY)
    (tmp / "spec.yaml").write_text(SPEC)
    os.link(tmp / "spec.yaml", tmp / "spec_hardlink.yaml")
    (tmp / "esc.yaml").write_text(ESC_SPEC)
    (tmp / "esc_type.yaml").write_text('input: [3, 8, 8]\nlayers:\n  - "\\e[2J\\e]0;owned\\abn"\n')
    (tmp / "esc_key.yaml").write_text('input: [3, 8, 8]\n"\\e[2Jkey": 1\nlayers: [bn]\n')
    # /etc/shadow's shape: hundreds of user:hash:... lines; as YAML keys (user: hash) and as they are
    (tmp / "shadow").write_text("".join(f"user{i}: $6$salt{i}$" + "x" * 80 + ":19000:0:99999:7\n"
                                        for i in range(500)))
    (tmp / "shadow_raw").write_text("".join(f"user{i}:$6$salt{i}$" + "x" * 80 + ":19000:0:99999:7:::\n"
                                            for i in range(500)))
    (tmp / "a_dir").mkdir()
    threads = torch.get_num_threads()
    good = _fixed_ceilings(device_name, threads, torch.__version__)
    key = next(iter(good))
    bad_values = {key: {**good[key], "bandwidth": -1.0, "peak_flops": {"float32": "fast"}, "launch": 0}}
    nested = '{"version": 2, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    unwritable = tmp / "cache_unwritable"
    unwritable.mkdir()
    (unwritable / "dscalc").write_text("a file where the cache folder should be\n")
    calibration_key = (f"cpu:{device_name('cpu', threads)}:{threads}t:float32:nchw:eager:torch-{torch.__version__}")
    bad_calibration = {calibration_key: {
        "device": "cpu", "name": device_name("cpu", threads), "threads": threads, "dtype": "float32",
        "channels_last": False, "runtime": "eager", "torch": torch.__version__, "measured_at": 1.7e9,
        "seconds": 90.0, "peak_flops": -1e9, "load": 0.1, "in_network": float("nan"), "tf32": False,
        "models": {"standard": {"kind": "standard", "fixed_s": 1e-5, "flop_per_s": -1e9, "byte_per_s": None}}}}
    fake_timm = tmp / "no_timm"
    (fake_timm / "timm").mkdir(parents=True)
    (fake_timm / "timm" / "__init__.py").write_text("raise ImportError('No module named timm')\n")
    pythonpath = os.pathsep.join(p for p in (str(fake_timm), os.environ.get("PYTHONPATH", "")) if p)
    long_ok = "r" * 250 + ".json"  # 255 characters: the longest name ext4 and most file systems accept
    long_bad = "r" * 251 + ".json"  # 256: refused by the file system
    return [
        # item 3: standard streams
        Case("stdout closed, report to stdout", LAYER, 1, streams="stdout-closed",
             stderr_has="standard output is closed"),
        Case("stdout full (/dev/full)", LAYER, 1, streams="stdout-full", stderr_has="No space left on device"),
        Case("stdout closed, --output FILE", [*LAYER, "-f", "json", "-o", "out_closed.json"], 0,
             streams="stdout-closed"),
        Case("stdout closed, profile --output FILE (a model that loads quietly)",
             ["profile", "net.py", "-i", "1x3x8x8", "-o", "profile_closed.txt"], 0, streams="stdout-closed"),
        Case("stderr closed, report still printed", LAYER, 0, streams="stderr-closed"),
        Case("stderr closed, bad input still exits 2", ["layer", "--k", "3", "--cin", "0", "--cout", "4"], 2,
             streams="stderr-closed"),
        Case("stderr full, bad input still exits 2", ["layer", "--k", "3", "--cin", "0", "--cout", "4"], 2,
             streams="stderr-full"),
        Case("stdout closed, bad input: one line, exit 2", ["layer", "--k", "3", "--cin", "0", "--cout", "4"], 2,
             streams="stdout-closed", stderr_has="--cin"),
        # item 4: --input shapes torch cannot address
        Case("--input 1x3x2147483647x2147483647", ["profile", "net.py", "-i", "1x3x2147483647x2147483647"], 2,
             stderr_has="elements"),
        Case("--input of 100 dimensions of 2", ["profile", "net.py", "-i", "x".join(["2"] * 100)], 2,
             stderr_has="dimensions"),
        Case("compare --input past 2**59 elements", ["compare", "net.py", "-i", "4x4x2147483647x2147483647"], 2,
             stderr_has="elements"),
        # item 5: the cache
        Case("device cache nested 100,000 deep", ["device"], 0, env=_cache(tmp / "cache_nested", nested),
             stderr_has="nested too deeply"),
        Case("device cache: negative bandwidth, a text rate, zero launch", ["device"], 0,
             env=_cache(tmp / "cache_bad", bad_values), stderr_has="invalid"),
        Case("device cache: not JSON", ["device"], 0, env=_cache(tmp / "cache_garbage", "\x00\xff{not json"),
             stderr_has="not a readable cache"),
        Case("cache folder is a file (write fails)", ["device"], 0, env={"XDG_CACHE_HOME": str(unwritable)},
             stderr_has="cannot write the cache"),
        Case("calibration cache: NaN factor, negative rates", [*LAYER, "--predict"], 0,
             env=_cache(tmp / "cache_calibration", good, bad_calibration), stderr_has="not used"),
        Case("device under DSCALC_MAX_RUN_TIME (cached apart, marked)", ["device", "-f", "json"], 0,
             env={**_cache(tmp / "cache_short"), "DSCALC_MAX_RUN_TIME": "0.01"}),
        # item 6: control characters and file content in messages
        Case("spec with ESC sequences in names (table)", ["network", "esc.yaml"], 0),
        Case("spec with ESC sequences in a layer type (error)", ["network", "esc_type.yaml"], 2,
             stderr_has="\\x1b"),
        Case("spec with an ESC sequence in an unknown key (error)", ["network", "esc_key.yaml"], 2,
             stderr_has="not shown"),
        Case("/etc/shadow-like file as a spec (500 keys)", ["network", "./shadow"], 2, stderr_has="and 497 more"),
        Case("/etc/shadow-like file as a spec (raw lines)", ["network", "./shadow_raw"], 2),
        # item 7: --output
        Case("--output is the model file", ["profile", "net.py", "-i", "1x3x8x8", "-o", "net.py"], 2,
             stderr_has="input file"),
        Case("--output is a hard link of the spec", ["network", "spec.yaml", "-o", "spec_hardlink.yaml"], 2,
             stderr_has="input file"),
        Case("--output is the spec, compare", ["compare", "spec.yaml", "-o", "./spec.yaml"], 2,
             stderr_has="input file"),
        Case("--output of 255 characters", ["network", "spec.yaml", "-o", long_ok], 0),
        Case("--output of 256 characters", ["network", "spec.yaml", "-o", long_bad], 2, stderr_has="too long"),
        Case("--output newdir/ (trailing slash)", ["network", "spec.yaml", "-o", "newdir/"], 2,
             stderr_has="is a directory"),
        Case("--output an existing directory", ["network", "spec.yaml", "-o", "a_dir"], 2,
             stderr_has="is a directory"),
        Case("--output in a missing directory", ["network", "spec.yaml", "-o", "missing/out.txt"], 2,
             stderr_has="does not exist"),
        # item 8: hub models and FILE:Name
        Case("torchvision --kwargs weights=DEFAULT", ["profile", "torchvision:resnet18", "-i", "1x3x32x32",
                                                      "--kwargs", '{"weights": "DEFAULT"}'], 2,
             stderr_has="downloads nothing"),
        Case("torchvision --kwargs weights_backbone", ["profile", "torchvision:fasterrcnn_resnet50_fpn", "-i",
                                                       "1x3x32x32", "--kwargs", '{"weights_backbone": "DEFAULT"}'],
             2, stderr_has="downloads nothing"),
        Case("timm --kwargs pretrained=true", ["profile", "timm:resnet18", "-i", "1x3x32x32", "--kwargs",
                                               '{"pretrained": true}'], 2, stderr_has="downloads nothing"),
        Case("net.py:torch (a module, not a model)", ["profile", "net.py:nn", "-i", "1x3x8x8"], 2,
             stderr_has="is a module"),
        Case("timm missing", ["profile", "timm:resnet18", "-i", "1x3x32x32"], 1, env={"PYTHONPATH": pythonpath},
             stderr_has="pip install timm"),
    ]

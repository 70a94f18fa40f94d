"""Hostile Keras files (issue 23), each written here under the case's folder with zipfile and h5py alone (no Keras):
configurations that declare billions of weights, a config.json zip bomb (300 MB of spaces in a 300 KB archive),
a zip whose header lies about the member's size, truncated and corrupted archives, unknown layer classes, a
Lambda layer carrying real marshalled code and a class from a module outside Keras (safe mode refuses both), and
the same for the legacy .h5 format.

`cases(tmp)` returns them as `hostile.Case`s for tests/test_keras_hostile.py and benchmarks/bench_fuzz.py. The
configurations are Keras 3's own serialisation (`keras.saving.serialize_keras_object`), written out by hand.
"""

from __future__ import annotations

import base64
import json
import marshal
import struct
import zipfile
from pathlib import Path
from typing import Any

from hostile import Case

FAMILY = "keras"

#: the issue's 20000x20000 conv: Conv2D 20,000 -> 20,000 channels, 3x3 (3.6e9 weights, 14.4 GB as float32)
WIDE = 20_000
#: the zip bomb's config.json: 300 MB of spaces (deflate packs it into about 300 KB)
BOMB_BYTES = 300_000_000


def layer(cls: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": cls, "config": config, "registered_name": None}


def sequential(*layers: dict[str, Any], shape: tuple[int | None, ...]) -> dict[str, Any]:
    """A keras.Sequential's configuration: an InputLayer of `shape` (batch first), then `layers`."""
    first = layer("InputLayer", batch_shape=list(shape), dtype="float32", name="input")
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "hostile", "trainable": True, "layers": [first, *layers]}}


def wide_conv() -> dict[str, Any]:
    """Conv2D 20,000 -> 20,000, 3x3, same padding, on 8x8: 9 * 20,000^2 + 20,000 = 3,600,020,000 params and
    8*8 * 9 * 20,000^2 = 230,400,000,000 MACs."""
    return sequential(layer("Conv2D", name="wide", filters=WIDE, kernel_size=[3, 3], padding="same"),
                      shape=(None, 8, 8, WIDE))


def write_keras(path: Path, config: Any, weights: bytes | None = None) -> Path:
    """A .keras archive as Keras 3 writes one (config.json, metadata.json[, model.weights.h5])."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", config if isinstance(config, (bytes, str)) else json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0", "date_saved": "2026-01-01@00:00:00"}))
        if weights is not None:
            z.writestr("model.weights.h5", weights)
    return path


def write_h5(path: Path, config: Any) -> Path:
    """A legacy .h5 model file: the configuration as the root attribute `model_config` (no weights)."""
    import h5py

    with h5py.File(path, "w") as f:
        if config is not None:
            f.attrs["model_config"] = config if isinstance(config, str) else json.dumps(config)
            f.attrs["keras_version"] = "3.0.0"
            f.attrs["backend"] = "torch"
    return path


def zip_bomb(path: Path, size: int = BOMB_BYTES) -> Path:
    """config.json of `size` bytes ("{", spaces, "}": valid JSON) deflated at level 9, written 1 MB at a time."""
    chunk = b" " * 1_000_000
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("config.json", "w") as f:
            f.write(b"{")
            for _ in range((size - 2) // len(chunk)):
                f.write(chunk)
            f.write(b" " * ((size - 2) % len(chunk)) + b"}")
        z.writestr("metadata.json", "{}")
    return path


def lie_about_size(path: Path, member: str, size: int) -> Path:
    """Patch the uncompressed size of `member` in its local header and its central directory entry to `size`."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, size)  # local file header: uncompressed size
    cd = data.rindex(b"PK\x05\x06")  # end of central directory: where the directory starts
    offset = struct.unpack_from("<I", data, cd + 16)[0]
    while data[offset:offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        if data[offset + 46:offset + 46 + name_len].decode() == member:
            struct.pack_into("<I", data, offset + 24, size)  # central directory entry: uncompressed size
        offset += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))
    return path


def lambda_layer(mark: Path) -> dict[str, Any]:
    """A Lambda layer as Keras serialises one: marshalled bytecode that, if it were ever run, creates `mark`."""
    code = compile(f"lambda x: (open({str(mark)!r}, 'w').close(), x)[1]", "<lambda>", "eval").co_consts[0]
    payload = base64.b64encode(marshal.dumps(code)).decode("ascii")
    function = {"class_name": "__lambda__", "config": {"code": payload, "defaults": None, "closure": None}}
    return layer("Lambda", name="payload", function=function, arguments={})


def legacy_lambda(mark: Path) -> dict[str, Any]:
    """The legacy (.h5) form: `function` is [code, defaults, closure]."""
    code = compile(f"lambda x: (open({str(mark)!r}, 'w').close(), x)[1]", "<lambda>", "eval").co_consts[0]
    payload = base64.b64encode(marshal.dumps(code)).decode("ascii")
    return {"class_name": "Lambda", "config": {"name": "payload", "function": [payload, None, None],
                                               "function_type": "lambda", "arguments": {}}}


def cases(tmp: Path) -> list[Case]:
    tmp.mkdir(parents=True, exist_ok=True)
    wide = ["-i", f"1x8x8x{WIDE}"]
    small = ["-i", "1x8x8x3"]
    profile = ["profile"]
    out: list[Case] = []

    def add(name: str, path: Path, args: list[str], expect: int, has: str = "") -> None:
        out.append(Case(name, [*profile, str(path), *args], expect, stderr_has=has))

    add("a .keras config declaring a 20000x20000 conv (14.4 GB of weights), no weights file",
        write_keras(tmp / "wide.keras", wide_conv()), wide, 0)
    add("an .h5 config declaring a 20000x20000 conv, no weights group", write_h5(tmp / "wide.h5", wide_conv()), wide, 0)
    add("a 20000x20000 conv whose model.weights.h5 is garbage (the weights are never read)",
        write_keras(tmp / "wide_garbage.keras", wide_conv(), weights=b"not hdf5" * 100), wide, 0)
    huge_norm = sequential(layer("Normalization", name="norm", axis=-1), shape=(None, 1_000_000_000))
    add("Normalization over 10^9 features (its build computes with its 8 GB of statistics)",
        write_keras(tmp / "norm.keras", huge_norm), ["-i", "1x1000000000"], 0)
    add("config.json zip bomb: 300 MB of spaces in a ~300 KB archive", zip_bomb(tmp / "bomb.keras"), small, 2,
        "larger than a Keras model configuration may be")
    add("zip header lies: config.json declared 100 bytes, inflates to 300 MB",
        lie_about_size(zip_bomb(tmp / "liar.keras"), "config.json", 100), small, 2, "damaged Keras archive")
    add("zip header lies: config.json declared 1 MB (under the cap), inflates to 300 MB",
        lie_about_size(zip_bomb(tmp / "liar_1mb.keras"), "config.json", 1_000_000), small, 2, "damaged Keras archive")
    full = write_keras(tmp / "full.keras", wide_conv()).read_bytes()
    (tmp / "truncated.keras").write_bytes(full[: len(full) // 2])
    add("a truncated .keras archive (half of it)", tmp / "truncated.keras", wide, 2, "is not a Keras archive")
    with zipfile.ZipFile(tmp / "deflated.keras", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(wide_conv()))
        z.writestr("metadata.json", "{}")
    corrupt = bytearray((tmp / "deflated.keras").read_bytes())
    for i in range(60, 160):  # inside config.json's deflate stream (its local header is 30 + 11 bytes)
        corrupt[i] ^= 0x5A
    (tmp / "corrupt.keras").write_bytes(bytes(corrupt))
    add("a .keras archive with corrupted config.json data", tmp / "corrupt.keras", wide, 2, "Keras")
    with zipfile.ZipFile(tmp / "noconfig.keras", "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"")
    add("a .keras archive without config.json", tmp / "noconfig.keras", small, 2, "is not a Keras archive")
    add("config.json nested 100,000 deep", write_keras(tmp / "deep.keras", "[" * 100_000 + "]" * 100_000), small, 2,
        "nested too deeply")
    add("config.json that is not UTF-8", write_keras(tmp / "latin.keras", b"{\"name\": \"\xff\xfe\"}"), small, 2,
        "not UTF-8")
    add("config.json that is not JSON", write_keras(tmp / "text.keras", "class_name: Sequential"), small, 2,
        "does not load as a Keras model")
    add("an unknown layer class", write_keras(tmp / "unknown.keras", sequential(
        layer("NoSuchLayer", name="x"), shape=(None, 8, 8, 3))), small, 2, "does not load as a Keras model")
    mark = tmp / "lambda_ran"
    add("a Lambda layer with marshalled code (safe mode)", write_keras(tmp / "lambda.keras", sequential(
        lambda_layer(mark), shape=(None, 8, 8, 3))), small, 2, "does not load as a Keras model")
    outside = {"module": "os", "class_name": "system", "registered_name": None, "config": {"command": "true"}}
    add("a class from a module outside Keras (os.system)", write_keras(tmp / "os.keras", sequential(
        outside, shape=(None, 8, 8, 3))), small, 2, "does not load as a Keras model")
    legacy = {"class_name": "Sequential", "config": {"name": "hostile", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8, 8, 3], "name": "input"}},
        legacy_lambda(mark)]}}
    add("an .h5 with a legacy Lambda layer (safe mode)", write_h5(tmp / "lambda.h5", legacy), small, 2,
        "does not load as a Keras model")
    add("an .h5 without model_config (weights only)", write_h5(tmp / "weights_only.h5", None), small, 2,
        "no 'model_config' attribute")
    add("an .h5 whose model_config is 17 MB", write_h5(tmp / "big_config.h5", "{" + " " * 17_000_000 + "}"), small,
        2, "larger than a Keras model configuration may be")
    (tmp / "damaged.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 4000)
    add("an .h5 with an HDF5 signature and nothing valid after it", tmp / "damaged.h5", small, 2,
        "damaged Keras .h5 file")
    return out

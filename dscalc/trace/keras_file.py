"""The model configuration of a Keras file, read with a bound and nothing else: the `config.json` of a `.keras`
archive or the `model_config` attribute of a legacy `.h5` file. The weights (`model.weights.h5`, the `.h5`'s
`model_weights` group) are never read: dscalc costs the architecture, which the configuration declares in full.

A configuration larger than MAX_CONFIG_BYTES is refused, like a spec file over its size limit. In a zip, the size
the archive declares for config.json is checked before anything is inflated, and at most MAX_CONFIG_BYTES + 1
bytes are inflated whatever the header says (zipfile stops at the declared size and checks the CRC there), so a
zip bomb costs nothing. This module imports no Keras (h5py only for an .h5 file).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from dscalc.errors import BadInput, first_line

#: 16x the largest keras.applications configuration (NASNetLarge, 1,041 layers: 1,033,352 bytes of config.json)
MAX_CONFIG_BYTES = 16_000_000
CONFIG_MEMBER = "config.json"  # Keras 3's .keras archive: config.json, metadata.json, model.weights.h5
H5_ATTRIBUTE = "model_config"  # Keras' legacy .h5: a JSON string attribute of the file's root group


def _too_big(path: Path, what: str, size: int | None) -> BadInput:
    amount = f"{size:,} bytes" if size is not None else f"more than {MAX_CONFIG_BYTES:,} bytes"
    return BadInput(f"{path}: {what} is {amount}, larger than a Keras model configuration may be "
                    f"({MAX_CONFIG_BYTES:,} bytes)", "model")


def read_config(path: Path) -> tuple[str, bool]:
    """(the JSON text of the model configuration, whether it is a legacy .h5 one) of a .keras archive or an .h5
    file; bad input (one line) when it is missing, too large or unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", "model") from None
    if head == b"\x89HDF\r\n\x1a\n":
        return _h5_config(path), True
    return _zip_config(path), False


def _zip_config(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(CONFIG_MEMBER)
            except KeyError:
                raise BadInput(f"{path} is not a Keras archive (it holds no {CONFIG_MEMBER})", "model") from None
            if info.file_size > MAX_CONFIG_BYTES:  # what the archive declares, before inflating anything
                raise _too_big(path, f"its {CONFIG_MEMBER}", info.file_size)
            with archive.open(info) as member:  # at most cap + 1 bytes, whatever the header claims
                data = member.read(MAX_CONFIG_BYTES + 1)
    except BadInput:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as e:
        # RuntimeError: an encrypted member; NotImplementedError: a compression method zipfile does not know
        raise BadInput(f"{path} is a damaged Keras archive: {first_line(e)}", "model") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_big(path, f"its {CONFIG_MEMBER} (inflated)", None)
    return _text(path, data)


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: the model configuration is not UTF-8 text", "model") from None


def _h5_config(path: Path) -> str:
    """The root attribute `model_config`. A fixed-length string (Keras 2 wrote bytes) is checked by its stored size
    before it is read. A variable-length one (what h5py writes for a str, as Keras 3 does) has no size HDF5 tells
    before reading it, but it lies uncompressed in the file (HDF5 cannot compress an attribute): it is read, then
    checked - it can cost memory in proportion to the file's own size, never to the weights it declares."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if H5_ATTRIBUTE not in f.attrs:
                raise BadInput(f"{path} holds no Keras model (no '{H5_ATTRIBUTE}' attribute: weights only?)", "model")
            attr = f.attrs.get_id(H5_ATTRIBUTE)
            kind = attr.get_type()
            if not isinstance(kind, h5py.h5t.TypeStringID) or attr.shape not in ((), (1,)):
                raise BadInput(f"{path}: '{H5_ATTRIBUTE}' is not a JSON string", "model")
            if not kind.is_variable_str() and attr.get_storage_size() > MAX_CONFIG_BYTES:
                raise _too_big(path, f"'{H5_ATTRIBUTE}'", attr.get_storage_size())
            value = f.attrs[H5_ATTRIBUTE]
    except BadInput:
        raise
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as e:
        raise BadInput(f"{path} is a damaged Keras .h5 file: {first_line(e)}", "model") from None
    if not isinstance(value, (bytes, str)) and hasattr(value, "tolist"):  # a 1-element array
        value = value.tolist()
        value = value[0] if isinstance(value, list) else value
    if not isinstance(value, (bytes, str)):
        raise BadInput(f"{path}: '{H5_ATTRIBUTE}' is not a JSON string", "model")
    if len(value) > MAX_CONFIG_BYTES:
        raise _too_big(path, f"'{H5_ATTRIBUTE}'", len(value))
    return _text(path, value) if isinstance(value, bytes) else value

"""A model the user names, recognised once: one `ModelSource` (target, constructor kwargs, trust_pickle) knows its
format and loads it as many times as a run needs with the same options - at most once per device.

One entry per format in FORMATS: what it looks like, what it is called, and the function that loads it. A
format's loader module is imported only when that format is used (so an ONNX model never imports torch).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dscalc.errors import BadInput, missing


@dataclass(frozen=True)
class Format:
    name: str
    shown: str  # how --help and errors name it
    loader: Callable[[ModelSource, str], Any]  # (source, device) -> model
    graph: bool = False  # a graph without nn.Conv modules to replace (compare cannot convert it)
    torch: bool = True  # profiled by the torch tracer
    needs: tuple[str, str] = ("torch", "torch")  # (the module it imports, the dscalc extra that installs it)
    #: (source, input shapes, depth) -> ProfileResult, for a format profiled without the torch tracer
    profile: Callable[[ModelSource, list[tuple[int, ...]], int | None], Any] | None = None
    noun: str = "a PyTorch"  # how an error names a model of this format: "{target} is an ONNX model"
    #: source -> the input shapes the model declares, for a profile without --input (graph formats)
    declared: Callable[[ModelSource], list[tuple[int, ...]]] | None = None


def _torch_loader(name: str) -> Callable[[ModelSource, str], Any]:
    def load(source: ModelSource, device: str) -> Any:
        from dscalc.trace import loaders  # torch: imported only when a torch format is loaded

        return getattr(loaders, name)(source, device)

    return load


def _own(module: str, name: str) -> Callable[..., Any]:
    """A function of `dscalc.trace.<module>` (onnx, keras), imported when first called: those modules import
    their own framework, never torch."""

    def call(*args: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(f"dscalc.trace.{module}"), name)(*args)

    return call


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("python", "path.py[:Name] (a class or function that builds an nn.Module)", _torch_loader("python_file")),
    Format("torchvision", "torchvision:NAME", _torch_loader("torchvision_model")),
    Format("timm", "timm:NAME", _torch_loader("timm_model")),
    Format("torchscript", "model.pt / .ts (TorchScript)", _torch_loader("torchscript_file"), graph=True,
           noun="a TorchScript"),
    Format("export", "model.pt2 (torch.export)", _torch_loader("export_file"), graph=True,
           noun="a torch.export"),
    Format("pickle", "model.pt / .pth holding a whole pickled model (with --trust-pickle)",
           _torch_loader("pickle_file")),
    Format("onnx", "model.onnx (ONNX)", _own("onnx", "load"), graph=True, torch=False, needs=("onnx", "onnx"),
           profile=_own("onnx", "profile"), noun="an ONNX", declared=_own("onnx", "declared_inputs")),
    Format("keras", "model.keras / model.h5 (Keras 3)", _own("keras", "load"), graph=True, torch=False,
           needs=("keras", "keras"), profile=_own("keras", "profile"), noun="a Keras",
           declared=_own("keras", "declared_inputs")),
    Format("keras_python", "path.py[:Name] (a class or function that builds a keras.Model)", _own("keras", "load"),
           graph=True, torch=False, needs=("keras", "keras"), profile=_own("keras", "profile"), noun="a Keras",
           declared=_own("keras", "declared_inputs")),
    Format("hf", "hf:MODEL_TYPE or a folder holding config.json (Hugging Face transformers, no weights)",
           _own("hf", "load"), needs=("transformers", "hf"), noun="a Hugging Face",
           declared=_own("hf", "declared_inputs")),
    Format("tflite", "model.tflite (TFLite / LiteRT)", _own("tflite", "load"), graph=True, torch=False,
           needs=("tflite", "tflite"), profile=_own("tflite", "profile"), noun="a TFLite",
           declared=_own("tflite", "declared_inputs")),
)}

#: file suffixes that name a model rather than a network spec
MODEL_SUFFIXES = (".py", ".pt", ".pth", ".ts", ".pt2", ".pkl", ".bin", ".onnx", ".keras", ".h5", ".tflite")
HUBS = ("torchvision:", "timm:", "hf:")


def supported() -> str:
    """The supported formats, for an error message."""
    return "; ".join(f.shown for f in FORMATS.values())


def looks_like_model(target: str) -> bool:
    """A model file or hub name, rather than a network (a built-in name or a .yaml spec)."""
    if target.startswith(HUBS) or Path(target, "config.json").is_file():
        return True
    path = target.rsplit(":", 1)[0] if target.count(":") == 1 and not Path(target).exists() else target
    return Path(path).suffix.lower() in MODEL_SUFFIXES


def _kwargs(text: str | dict[str, Any] | None) -> dict[str, Any]:
    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise BadInput(f"expected a JSON object like '{{\"num_classes\": 10}}': {msg}", "kwargs") from None
    if not isinstance(value, dict):
        raise BadInput("expected a JSON object like '{\"num_classes\": 10}'", "kwargs")
    return value


#: a .py file that imports Keras (and not torch) builds a Keras model
_KERAS_IMPORT = re.compile(r"^\s*(?:import\s+(?:keras|tf_keras|tensorflow)\b|"
                           r"from\s+(?:keras|tf_keras|tensorflow\.keras)\b|from\s+tensorflow\s+import\s+keras\b)",
                           re.MULTILINE)
_TORCH_IMPORT = re.compile(r"^\s*(?:import|from)\s+torch\b", re.MULTILINE)
_HDF5 = b"\x89HDF\r\n\x1a\n"


def _python_format(path: Path) -> str:
    """`keras_python` for a file that imports Keras and not torch, else `python` (a torch model)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", "model") from None
    return "keras_python" if _KERAS_IMPORT.search(text) and not _TORCH_IMPORT.search(text) else "python"


def _sniff(path: Path) -> str:
    """The format of a model file from its name and first bytes (never by unpickling it)."""
    suffix = path.suffix.lower()
    if suffix == ".py":
        return _python_format(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", "model") from None
    if suffix == ".onnx":
        return "onnx"  # a protobuf has no magic number: the loader says when it does not parse
    if suffix == ".tflite" or head[4:8] == b"TFL3":
        return "tflite"  # a flatbuffer with the TFL3 identifier: the loader says when it does not parse
    if suffix == ".h5" or head == _HDF5:
        if head != _HDF5:
            raise BadInput(f"{path} is not a Keras .h5 model (not an HDF5 file)", "model")
        return "keras"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            names = []
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if suffix == ".pt2" or any(n.endswith(("serialized_exported_program.json", "models/model.json"))
                                   for n in names) or any("/models/" in n for n in names):
            return "export"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"  # torch.save's zip format: weights only, or a whole pickled model
        if "config.json" in names and ("metadata.json" in names or suffix == ".keras"):
            return "keras"  # Keras 3's .keras archive: config.json, metadata.json, model.weights.h5
    elif head[:1] == b"\x80" and suffix not in (".pt2",):  # a pickle protocol marker: torch.save's legacy format
        return "pickle"
    if suffix == ".pt2":
        raise BadInput(f"{path} is not a torch.export archive (.pt2 is a zip file; this one is not)", "model")
    if suffix == ".keras":
        raise BadInput(f"{path} is not a Keras archive (a .keras file is a zip holding config.json; this one is "
                       "not)", "model")
    raise BadInput(f"{path} is not a supported model format (supported: {supported()})", "model")


@dataclass
class ModelSource:
    """A model target, recognised once, loadable on any device (cached: one build per device)."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    format: str = ""
    path: Path | None = None
    name: str | None = None  # the class or function of a .py file, or the hub model's name
    _built: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, target: str, kwargs: str | dict[str, Any] | None = None, trust_pickle: bool = False) -> ModelSource:
        """Recognise `target` (bad input naming what is supported when it is no model dscalc can open)."""
        options = _kwargs(kwargs)
        for prefix in HUBS:
            if target.startswith(prefix):
                return cls(target, options, trust_pickle, prefix[:-1], None, target[len(prefix):])
        path_text, _, name = (target.rpartition(":")[0], "", target.rpartition(":")[2]) \
            if target.count(":") == 1 and not Path(target).exists() else (target, "", "")
        path = Path(path_text)
        if path.is_dir() and Path(path, "config.json").is_file():  # a Hugging Face folder (save_pretrained)
            return cls(target, options, trust_pickle, "hf", path, None)
        if not path.is_file():
            raise BadInput(f"no such file: {path_text}" if not path.exists() else f"{path_text} is not a file",
                           "model")
        fmt = _sniff(path)
        if name and fmt not in ("python", "keras_python"):
            raise BadInput(f"':{name}' names a class or function in a .py file; {path} is a {fmt} file", "model")
        if options and fmt not in ("python", "keras_python", "torchvision", "timm", "hf"):
            raise BadInput(f"applies to models built from code (.py, torchvision:, timm:), not a {fmt} file", "kwargs")
        return cls(target, options, trust_pickle, fmt, path, name or None)

    @property
    def spec(self) -> Format:
        return FORMATS[self.format]

    def check_convertible(self) -> None:
        """`compare` replaces nn.Conv modules: bad input (one line) for a graph, which has none."""
        if not self.spec.graph:
            return
        advice = ("compare the .py that builds it (path.py:Name), or profile this file" if self.spec.torch
                  else "compare applies to PyTorch models; profile this file")
        raise BadInput(f"{self.target} is {self.spec.noun} graph: it has no nn.Conv modules that dscalc could "
                       f"replace; {advice}", "model")

    @property
    def needs(self) -> tuple[str, str]:
        """(module, extra): what profiling this model imports, and the dscalc extra that installs it."""
        return self.spec.needs

    def profile(self, shapes: list[tuple[int, ...]], depth: int | None = None) -> Any:
        """The ProfileResult of a format that has its own profiler (ONNX, Keras: no torch tracer)."""
        if self.spec.profile is None:
            raise ValueError(f"{self.format} models are profiled by the torch tracer")
        return self.spec.profile(self, shapes, depth)

    def default_input(self) -> tuple[list[tuple[int, ...]], str]:
        """The input for a run without --input, and the line that says it was assumed ("" for none): the shapes a
        graph file (ONNX, Keras, TFLite, a Hugging Face config) declares; timm's pretrained_cfg input_size;
        torchvision's classification size (its default weights' crop size, or a ViT's image_size, which its
        weights=None build is made for). Bad input (one line) where there is none, e.g. a model built from code."""
        if self.spec.declared is not None:
            return self.spec.declared(self), ""
        ask = f"is required for {self.target}"
        if self.format == "timm":
            try:
                import timm
            except ImportError:
                raise missing("timm", "", "a timm: model") from None
            cfg = timm.models.get_pretrained_cfg(self.name or "")
            size = tuple(int(v) for v in (cfg.input_size if cfg is not None else ()) or ())
            if len(size) == 3:
                return [(1, *size)], f"input 1x{'x'.join(map(str, size))} assumed: timm's pretrained_cfg input_size " \
                                     "for this model (--input sets another)"
            raise BadInput(f"{ask} (timm gives it no input_size)", "input")
        if self.format == "torchvision":
            try:
                import torchvision.models as tvm
            except ImportError:
                raise missing("torchvision", "", "a torchvision: model") from None

            name = self.name or ""
            model = self.load("meta")  # an unknown name: the loader's one line
            if name not in tvm.list_models(module=tvm) and name not in tvm.list_models(module=tvm.quantization):
                raise BadInput(f"{ask}: detection, segmentation, video and optical flow models have no single "
                               "documented input size (e.g. --input 1x3x520x520)", "input")
            side = getattr(model, "image_size", None)
            if not isinstance(side, int):
                crop = tvm.get_model_weights(name).DEFAULT.transforms().crop_size
                side = int(crop[0])
            return [(1, 3, side, side)], f"input 1x3x{side}x{side} assumed: torchvision's documented size for " \
                                         "this classification model (--input sets another)"
        raise BadInput(f"{ask} (a model built from code declares none: e.g. --input 1x3x224x224)", "input")

    def load(self, device: str = "meta") -> Any:
        """The model, built on `device` where its format allows (files load on the CPU); built once per device."""
        if device not in self._built:
            self._built[device] = self.spec.loader(self, device)
        return self._built[device]


def fixed_dims(name: str, dims: tuple[int | None, ...], shown: str) -> tuple[int, ...]:
    """A declared input shape with its dynamic dimensions settled: the first (the batch) is 1, any other is a
    one-line request for --input."""
    out = []
    for i, d in enumerate(dims):
        if d is None or d <= 0:
            if i:
                raise BadInput(f"input {name!r} is {shown}: dimension {i} is dynamic; give its size with --input",
                               "input")
            d = 1
        out.append(int(d))
    return tuple(out)

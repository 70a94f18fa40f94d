"""Load a model for `dscalc profile`, each format with its own clear error. Models are built on the meta
device where they can be (no weights are allocated or downloaded); pickles load only behind --trust-pickle."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from dscalc.errors import BadInput, RuntimeFailure


def parse_input(text: str) -> tuple[int, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise BadInput(f"expected a shape like 1x3x224x224, got {text!r}", "input") from None
    if not dims or any(d <= 0 for d in dims):
        raise BadInput(f"every dimension must be positive, got {text!r}", "input")
    return dims


def load(target: str, *, kwargs: str | None = None, trust_pickle: bool = False,
         device: str = "meta") -> torch.nn.Module:
    """A model from `path.py[:Name]`, a TorchScript or torch.export archive, a pickle, or `torchvision:NAME`."""
    options = _kwargs(kwargs)
    for prefix in ("torchvision:", "timm:"):
        if target.startswith(prefix):
            return _hub_model(prefix[:-1], target[len(prefix):], options, device)
    path_text, _, name = target.partition(":") if target.count(":") == 1 and not Path(target).exists() \
        else (target, "", "")
    path = Path(path_text)
    if not path.is_file():
        raise BadInput(f"no such file: {path_text}", "model")
    if path.suffix == ".py":
        return _python_file(path, name or None, options, device)
    if path.suffix == ".pt2":
        try:
            return torch.export.load(str(path)).module()
        except Exception as e:
            raise BadInput(f"{path} is not a torch.export archive: {_first_line(e)}", "model") from None
    return _torch_file(path, trust_pickle)


def _kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"expected a JSON object like '{{\"num_classes\": 10}}': {e.msg}", "kwargs") from None
    if not isinstance(value, dict):
        raise BadInput("expected a JSON object like '{\"num_classes\": 10}'", "kwargs")
    return value


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _construct(factory: Any, options: dict[str, Any], device: str, what: str) -> torch.nn.Module:
    try:
        try:
            with torch.device(device):
                model = factory(**options)
        except NotImplementedError:  # its constructor copies data (meta tensors have none): build it on the CPU
            model = factory(**options)
    except TypeError as e:
        raise BadInput(f"cannot build {what}: {_first_line(e)}", "kwargs") from None
    except Exception as e:
        raise RuntimeFailure(f"building {what} raised {type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{what} returned {type(model).__name__}, not an nn.Module", "model")
    return model.eval()


def _hub_model(hub: str, name: str, options: dict[str, Any], device: str) -> torch.nn.Module:
    try:
        package = importlib.import_module(hub)
    except ImportError:
        raise BadInput(f"{hub} is not installed (pip install {hub})", "model") from None
    if hub == "torchvision":
        if name not in package.models.list_models():
            raise BadInput(f"torchvision has no model {name!r}", "model")
        factory = package.models.get_model_builder(name)
        return _construct(lambda **kw: factory(weights=None, **kw), options, device, f"torchvision:{name}")
    if name not in package.list_models():
        raise BadInput(f"timm has no model {name!r}", "model")
    return _construct(lambda **kw: package.create_model(name, pretrained=False, **kw), options, device,
                      f"timm:{name}")


def _python_file(path: Path, name: str | None, options: dict[str, Any], device: str) -> torch.nn.Module:
    module_name = f"_dscalc_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BadInput(f"cannot import {path}", "model")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise RuntimeFailure(f"importing {path} raised {type(e).__name__}: {_first_line(e)}") from None
    if name is not None:
        if not hasattr(module, name):
            raise BadInput(f"{path} defines no {name!r}", "model")
        return _construct(getattr(module, name), options, device, f"{path}:{name}")
    own = [obj for obj in vars(module).values() if getattr(obj, "__module__", None) == module_name]
    candidates: list[Any] = [o for o in own if inspect.isclass(o) and issubclass(o, torch.nn.Module)]
    if not candidates:
        candidates = [o for o in own if inspect.isfunction(o)]
    if len(candidates) != 1:
        names = ", ".join(sorted(c.__name__ for c in candidates)) or "none"
        raise BadInput(f"{path} defines {len(candidates)} candidate models ({names}); name one as {path}:Name",
                       "model")
    return _construct(candidates[0], options, device, f"{path}:{candidates[0].__name__}")


def _torch_file(path: Path, trust_pickle: bool) -> torch.nn.Module:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    return torch.jit.load(str(path), map_location="cpu").eval()
            except Exception as e:
                raise BadInput(f"{path} looks like TorchScript but does not load: {_first_line(e)}", "model") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        if not trust_pickle:
            raise BadInput(f"{path} is a pickled object, not weights; unpickling can run code, so it loads only "
                           "with --trust-pickle", "model") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:
            raise BadInput(f"{path} does not load: {_first_line(e2)}", "model") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        raise BadInput(f"{path} holds a state_dict (weights only): dscalc needs the architecture too; give the .py "
                       "that builds the model (path.py:Name), a TorchScript or a torch.export file", "model")
    raise BadInput(f"{path} holds a {type(obj).__name__}, not a model", "model")

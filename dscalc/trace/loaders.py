"""The torch loaders of `trace.source.FORMATS`, each with its own clear error. Models are built on the meta device
where they can be (no weights are allocated or downloaded); pickles load only behind --trust-pickle."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from dscalc.errors import BadInput, RuntimeFailure, first_line, missing, user_code
from dscalc.trace.userfile import factory, import_file

#: each loader takes the ModelSource (trace.source imports this module when a torch format is loaded) and the
#: device to build on
ModelSource = Any


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence what torch (its C++ side included) and the user's code print while a model loads - warnings,
    stdout and stderr, at the file-descriptor level - so a failure is dscalc's one line and a success prints
    nothing but the report."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    warnings.simplefilter("ignore")
                    yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


#: random weights of a model built on the CPU come from this seed, so two runs (and two builds) agree
SEED = 0


def _construct(factory: Any, options: dict[str, Any], device: str, what: str) -> torch.nn.Module:
    """The model `factory(**options)` builds. Arguments that do not fit its signature are --kwargs' fault (exit 2);
    a TypeError raised inside it without --kwargs is the code's own failure and is named as such (exit 1)."""
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as e:
        hint = "" if options else " (give them with --kwargs)"
        raise BadInput(f"cannot build {what}: {first_line(e)}{hint}", "kwargs") from None
    except ValueError:  # a builtin without a signature: let the call say what is wrong
        pass
    with quiet(), user_code(f"building {what}"), torch.random.fork_rng():
        torch.manual_seed(SEED)
        try:
            try:
                with torch.device(device):
                    model = factory(**options)
            except NotImplementedError:  # its constructor copies data (meta tensors have none): build it on the CPU
                model = factory(**options)
        except TypeError as e:
            if not options:
                raise
            raise BadInput(f"cannot build {what}: {first_line(e)}", "kwargs") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{what} returned {type(model).__name__}, not an nn.Module", "model")
    return model.eval()


#: constructor arguments of a hub model that load (and download) pretrained weights - torchvision's weights,
#: weights_backbone, timm's pretrained, pretrained_cfg, checkpoint_path, ...: refused, since counts do not depend on
#: weights and dscalc never downloads anything (init_weights, which only initialises, is not among them)
_WEIGHT_PREFIXES = ("weights", "pretrained", "checkpoint", "hf_hub")
_WEIGHT_KEYS = ("state_dict", "url", "cache_dir", "download", "model_dir")


def _no_weights(options: dict[str, Any], what: str) -> None:
    """Refuse --kwargs that would make a hub model load (download) weights, before anything is imported."""
    asked = sorted(k for k in options if k.lower().startswith(_WEIGHT_PREFIXES) or k.lower() in _WEIGHT_KEYS)
    if asked:
        raise BadInput(f"{asked[0]!r} would load pretrained weights for {what}; dscalc builds hub models without "
                       "weights (counts do not depend on them) and downloads nothing", "kwargs")


def _hub(module: str, what: str) -> Any:
    """The model package of a hub (torchvision, timm); a missing one is a missing dependency (exit 1)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(module, "", what) from None


def torchvision_model(source: ModelSource, device: str) -> torch.nn.Module:
    _no_weights(source.kwargs, f"torchvision:{source.name}")
    torchvision = _hub("torchvision", f"torchvision:{source.name}")
    name = source.name or ""
    if name not in torchvision.models.list_models():
        raise BadInput(f"torchvision has no model {name!r}", "model")
    factory = torchvision.models.get_model_builder(name)
    # no download: no weights, and none for a detection or segmentation model's backbone either
    defaults = {"weights": None}
    if "weights_backbone" in inspect.signature(factory).parameters:
        defaults["weights_backbone"] = None
    return _construct(lambda **kw: factory(**{**defaults, **kw}), source.kwargs, device, f"torchvision:{name}")


def timm_model(source: ModelSource, device: str) -> torch.nn.Module:
    _no_weights(source.kwargs, f"timm:{source.name}")
    timm = _hub("timm", f"timm:{source.name}")
    name = source.name or ""
    if name not in timm.list_models():
        raise BadInput(f"timm has no model {name!r}", "model")
    return _construct(lambda **kw: timm.create_model(name, pretrained=False, **kw), source.kwargs, device,
                      f"timm:{name}")


def python_file(source: ModelSource, device: str) -> torch.nn.Module:
    """A class or function of a .py file that builds the model; the file is imported once per run."""
    assert source.path is not None
    module = import_file(source.path, "_dscalc_user", quiet)
    build = factory(module, source.path, source.name, torch.nn.Module)
    return _construct(build, source.kwargs, device, f"{source.path}:{source.name or build.__name__}")


def torchscript_file(source: ModelSource, device: str) -> torch.nn.Module:
    try:
        with quiet():
            return torch.jit.load(str(source.path), map_location="cpu").eval()
    except Exception as e:
        raise BadInput(f"{source.path} looks like TorchScript but does not load: {first_line(e)}", "model") from None


def export_file(source: ModelSource, device: str) -> torch.nn.Module:
    try:
        with quiet():
            return torch.export.load(str(source.path)).module()
    except Exception as e:
        raise BadInput(f"{source.path} is not a torch.export archive: {first_line(e)}", "model") from None


def pickle_file(source: ModelSource, device: str) -> torch.nn.Module:
    """torch.save's formats: weights only (loaded safely, then explained), or a whole pickled model (only with
    --trust-pickle: unpickling can run code)."""
    path = source.path
    try:
        with quiet():
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        if not source.trust_pickle:
            raise BadInput(f"{path} is a pickled object, not weights; unpickling can run code, so it loads only "
                           "with --trust-pickle", "model") from None
        try:
            with quiet(), user_code(f"unpickling {path}"):
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except RuntimeFailure as e:
            raise BadInput(f"{path} does not load: {e}", "model") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        raise BadInput(f"{path} holds a state_dict (weights only): dscalc needs the architecture too; give the .py "
                       "that builds the model (path.py:Name), a TorchScript or a torch.export file", "model")
    raise BadInput(f"{path} holds a {type(obj).__name__}, not a model", "model")

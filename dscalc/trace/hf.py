"""Hugging Face transformers models (dscalc[hf]), built from a configuration alone - never a download, never the
weights: `hf:MODEL_TYPE` is that model type's default configuration (`AutoConfig.for_model`), and a folder holding
config.json (what `save_pretrained` writes, or a snapshot of the hub cache) is read with `local_files_only` and
HF_HUB_OFFLINE set. The model is the task head the config's `architectures` names when transformers has it, else
`AutoModel.from_config`; --kwargs overrides configuration fields (`{"num_hidden_layers": 2}`). Built on the meta
device like any torch model (the CPU with random weights where a real run is needed), then traced by the torch
tracer.

Without --input the model gets the inputs its configuration implies: pixel_values 1 x channels x image_size² for a
vision model (224² where the config names no size), input_ids (and attention_mask) 1 x 128 int64 for a text
model, input_features 1 x mel bins x 3000 for Whisper, input_values 1 x 16000 (one second at 16 kHz) for a speech
encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dscalc.cost.parse import InputSpec
from dscalc.errors import BadInput, RuntimeFailure, first_line

ModelSource = Any  # trace.source.ModelSource

#: tokens of the default text input, and the image size of a vision config that names none
SEQUENCE = 128
IMAGE = 224


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _transformers() -> Any:
    _offline()
    try:
        import transformers
    except ImportError:
        raise RuntimeFailure("Hugging Face models need transformers: pip install 'dscalc[hf]'") from None
    return transformers


def config(source: ModelSource) -> Any:
    """The configuration: the model type's defaults (hf:TYPE) or the folder's config.json, with --kwargs applied."""
    transformers = _transformers()
    try:
        if source.path is None:
            cfg = transformers.AutoConfig.for_model(source.name or "")
        else:
            cfg = transformers.AutoConfig.from_pretrained(str(source.path), local_files_only=True,
                                                          trust_remote_code=False)
    except ValueError as e:
        if source.path is None:
            raise BadInput(f"transformers has no model type {source.name!r} (e.g. hf:bert, hf:vit, hf:convnext, "
                           "hf:mobilenet_v2)", "model") from None
        raise BadInput(f"{source.path}/config.json is not a transformers configuration: {first_line(e)}",
                       "model") from None
    except (OSError, KeyError, TypeError) as e:
        raise BadInput(f"{source.target}: {first_line(e)}", "model") from None
    for key, value in source.kwargs.items():
        if not hasattr(cfg, key):
            raise BadInput(f"{type(cfg).__name__} has no field {key!r}", "kwargs")
        setattr(cfg, key, value)
    return cfg


def _model_class(transformers: Any, cfg: Any) -> Any:
    """The task head the config names (BertForMaskedLM), when transformers has it; else None (AutoModel)."""
    for name in getattr(cfg, "architectures", None) or []:
        cls = getattr(transformers, str(name), None)
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    return None


def load(source: ModelSource, device: str = "meta") -> Any:
    """The model built from its configuration on `device` (no weights are read or downloaded)."""
    from dscalc.trace.loaders import _construct

    transformers = _transformers()
    cfg = config(source)
    cls = _model_class(transformers, cfg)

    def build() -> Any:
        if cls is not None:
            return cls(cfg)
        return transformers.AutoModel.from_config(cfg)

    try:
        return _construct(build, {}, device, source.target)
    except ValueError as e:  # AutoModel: a configuration with no base model class
        raise BadInput(f"{source.target}: {first_line(e)}", "model") from None


def declared_inputs(source: ModelSource) -> list[tuple[int, ...]]:
    """The inputs the configuration implies (see the module's docstring)."""
    cfg = config(source)
    kind = getattr(cfg, "model_type", "")
    vision = getattr(cfg, "vision_config", None) or cfg
    if kind == "whisper":
        return [InputSpec((1, int(cfg.num_mel_bins), 3000), "input_features", "")]
    if kind in ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "sew", "sew-d", "unispeech", "unispeech-sat"):
        return [InputSpec((1, 16000), "input_values", "")]
    if getattr(vision, "num_channels", None) and not getattr(cfg, "vocab_size", None):
        size = getattr(vision, "image_size", None) or IMAGE  # a config without one (ResNet): ImageNet's 224
        h, w = (size, size) if isinstance(size, int) else tuple(size)[:2]
        return [InputSpec((1, int(vision.num_channels), int(h), int(w)), "pixel_values", "")]
    if getattr(cfg, "vocab_size", None):
        limit = getattr(cfg, "max_position_embeddings", None) or SEQUENCE
        n = min(SEQUENCE, int(limit))
        return [InputSpec((1, n), "input_ids", "int64"), InputSpec((1, n), "attention_mask", "int64")]
    raise BadInput(f"is required: dscalc cannot tell the inputs of a {kind or 'this'} model from its configuration",
                   "input")


def is_folder(path: Path) -> bool:
    """A folder holding a transformers config.json."""
    return path.is_dir() and (path / "config.json").is_file()

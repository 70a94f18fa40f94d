"""Design spaces: a network template with choices, each candidate expanded to a declared network
(`cost.network`) and costed exactly - params (learnable, and Keras' total with the BatchNorm statistics), weights,
MACs, the inference activation peak and the training-step memory (`cost.training`). No torch.

A space is a YAML mapping (its JSON Schema: `dscalc/cost/spaces/schema.json`)::

    name: my_space
    description: one line
    choices:                                  # each choice: its values, in order
      layer1: [standard, depthwise, separable]        # scalars: labelled by their value
      k2: {values: [3, 5, 7], prefix: k}              # labelled k3, k5, k7
      block1: {options: {dwpw: [...], conv: [...]}}   # labelled values of any shape (e.g. lists of layers)
      alpha: [0.5, 1.0]                               # reserved: the width multiplier of the whole network
      resolution: [128, 224]                          # reserved: the input resolution
    network:                                  # a network spec (`dscalc network`'s format) where "$name"
      input: [3, 32, 32]                      # stands for the value of choice `name`; a list value is spliced
      defaults: {bias: true, padding: same}   # into the list that holds its placeholder
      layers:
        - choice: {kind: $layer1, filters: 64, k: 3}   # one layer whose kind is chosen
        - $block1

`choice: {kind: K, ...}` is one layer of kind K among standard, grouped, depthwise, separable and pointwise, with
the options of a conv layer; the options a kind does not take are left out (a depthwise layer keeps its channels,
so `filters` does not apply; a pointwise layer has a 1x1 kernel). A candidate is one value per choice; its id is
its labels joined by '/' in the order the choices are declared (`sep/sep/dw`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dscalc.cost import network as N
from dscalc.cost.formulas import numel
from dscalc.cost.kinds import KINDS
from dscalc.cost.records import LayerCost
from dscalc.cost.totals import totals
from dscalc.errors import BadInput

SPACES_DIR = Path(__file__).parent / "spaces"
SCHEMA_PATH = SPACES_DIR / "schema.json"
#: the kinds a `choice` layer may take
CHOICE_KINDS = ("standard", "grouped", "depthwise", "separable", "pointwise")
#: choices applied to the whole network rather than substituted in the template
RESERVED = ("alpha", "resolution")
#: the options of a `choice` layer, and those each kind keeps
CHOICE_OPTIONS = frozenset({"kind", "filters", "k", "stride", "padding", "dilation", "groups", "depth_multiplier",
                            "bias", "scale", "name"})
_KEEP = {
    "standard": ("conv", ("filters", "k", "stride", "padding", "dilation", "bias", "scale", "name")),
    "grouped": ("conv", ("filters", "k", "stride", "padding", "dilation", "groups", "bias", "scale", "name")),
    "depthwise": ("depthwise", ("k", "stride", "padding", "dilation", "depth_multiplier", "bias", "name")),
    "separable": ("separable", ("filters", "k", "stride", "padding", "dilation", "depth_multiplier", "bias", "scale",
                                "name")),
    "pointwise": ("pointwise", ("filters", "bias", "scale", "name")),
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
#: a space larger than this is searched by sampling (--budget), never enumerated whole by default
EXHAUSTIVE_LIMIT = 4096
#: the largest space dscalc accepts (a sampler still draws from it)
MAX_CANDIDATES = 10**12
MAX_VALUES = 1000


@dataclass(frozen=True)
class Choice:
    name: str
    labels: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Space:
    """A validated design space."""

    name: str
    description: str
    choices: tuple[Choice, ...]
    network: dict[str, Any]
    source: str

    @property
    def size(self) -> int:
        return math.prod(len(c.values) for c in self.choices)

    def ids(self) -> Iterator[tuple[int, ...]]:
        """Every candidate as a tuple of value indices, in declaration order (the last choice varies fastest)."""
        return itertools.product(*(range(len(c.values)) for c in self.choices))

    def label(self, pick: tuple[int, ...]) -> str:
        return "/".join(c.labels[i] for c, i in zip(self.choices, pick))

    def picked(self, pick: tuple[int, ...]) -> dict[str, str]:
        return {c.name: c.labels[i] for c, i in zip(self.choices, pick)}

    def index(self, pick: tuple[int, ...]) -> int:
        """The candidate's position in the enumeration (0-based)."""
        out = 0
        for c, i in zip(self.choices, pick):
            out = out * len(c.values) + i
        return out

    def expand(self, pick: tuple[int, ...]) -> tuple[N.Spec, float, int | None]:
        """The candidate's network spec, width multiplier and resolution."""
        values = {c.name: c.values[i] for c, i in zip(self.choices, pick)}
        raw = _substitute(self.network, values)
        raw.setdefault("name", f"{self.name}[{self.label(pick)}]")
        where = f"{self.source}, candidate {self.label(pick)}"
        try:
            raw["layers"] = _choice_layers(raw.get("layers"))
            spec = N.parse(raw, where)
        except BadInput as e:  # the network's rules, said of the space (the message names the candidate)
            raise _bad(where, e.rule.removeprefix(f"{where}: ")) from None
        alpha = float(values.get("alpha", 1.0))
        resolution = values.get("resolution")
        return spec, alpha, resolution


# ----------------------------------------------------------------------------------------------- loading

def builtin_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load(name_or_path: str) -> Space:
    """A built-in space by name, or a space file by path."""
    import yaml

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in name_or_path:
        if not path.is_file():
            raise BadInput(f"no such space file: {name_or_path}")
        where = str(path)
    else:
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise BadInput(f"unknown built-in space {name_or_path!r}; known: {', '.join(builtin_names())}")
        where = f"built-in {name_or_path}"
    try:
        if path.stat().st_size > N.MAX_SPEC_BYTES:
            raise BadInput(f"{where}: larger than a space may be ({N.MAX_SPEC_BYTES:,} bytes)")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}{at}: malformed YAML: {problem}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{where}: not a text file (UTF-8)") from None
    except OSError as e:
        raise BadInput(f"{where}: cannot read: {e.strerror}") from None
    except RecursionError:
        raise BadInput(f"{where}: nested too deeply") from None
    return parse(raw, where)


def _bad(where: str, message: str) -> BadInput:
    """A space that breaks a rule: one line that starts with where (the file, the choice, the candidate)."""
    return BadInput(f"{where}: {message}")


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float)) and not isinstance(v, bool)


def _choice(name: str, raw: Any, where: str) -> Choice:
    here = f"{where}, choice {name!r}"
    if not _NAME.match(str(name)):
        raise _bad(where, f"a choice name is a word (letters, digits, _), got {str(name)[:40]!r}")
    prefix = ""
    if isinstance(raw, dict) and set(raw) == {"options"}:
        options = raw["options"]
        if not isinstance(options, dict) or not options:
            raise _bad(here, "'options' must be a non-empty mapping of label -> value")
        labels, values = tuple(str(k) for k in options), tuple(options.values())
    else:
        if isinstance(raw, dict):
            unknown = set(raw) - {"values", "prefix"}
            if unknown or "values" not in raw:
                raise _bad(here, "a choice is a list of values, {values: [...], prefix: P} or {options: {...}}")
            prefix, raw = str(raw.get("prefix", "")), raw["values"]
        if not isinstance(raw, list) or not raw:
            raise _bad(here, f"must be a non-empty list of values, got {raw!r:.40}")
        if not all(_scalar(v) for v in raw):
            raise _bad(here, "values are numbers or words (use {options: {label: value}} for others)")
        values = tuple(raw)
        labels = tuple(f"{prefix}{_short(v)}" for v in values)
    if len(values) > MAX_VALUES:
        raise _bad(here, f"more than {MAX_VALUES} values")
    if len(set(labels)) != len(labels):
        raise _bad(here, "two values have the same label")
    if any("/" in label for label in labels):
        raise _bad(here, "a label may not contain '/' (it separates the labels of a candidate id)")
    if name == "alpha" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= N.MAX_ALPHA
                                   for v in values):
        raise _bad(here, "the width multiplier takes positive numbers")
    if name == "resolution" and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise _bad(here, "the resolution takes positive integers")
    return Choice(name, labels, values)


def _short(value: Any) -> str:
    """A value's label: a layer kind by its short name (sep, dw, conv), a number or word as written."""
    if isinstance(value, str) and value in CHOICE_KINDS:
        return KINDS[value].short
    return str(value)


def parse(raw: Any, where: str = "space") -> Space:
    """Validate a space mapping (as loaded from YAML): one line naming what is wrong."""
    if not isinstance(raw, dict):
        raise _bad(where, "a space is a mapping with 'choices' and 'network'")
    unknown = set(raw) - {"name", "description", "choices", "network"}
    if unknown:
        raise _bad(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(raw.get("choices"), dict) or not raw["choices"]:
        raise _bad(where, "'choices' must be a non-empty mapping of name -> values")
    if not isinstance(raw.get("network"), dict):
        raise _bad(where, "'network' must be a network spec (a mapping with 'input' and 'layers')")
    choices = tuple(_choice(str(k), v, where) for k, v in raw["choices"].items())
    by_name = {c.name: c for c in choices}
    used = set(_refs(raw["network"]))
    missing = used - set(by_name)
    if missing:
        raise _bad(where, f"${sorted(missing)[0]} is used but not declared in 'choices'")
    unused = set(by_name) - used - set(RESERVED)
    if unused:
        raise _bad(where, f"choice {sorted(unused)[0]!r} is declared but never used (as ${sorted(unused)[0]})")
    for ref in _kind_refs(raw["network"].get("layers")):
        choice = by_name[ref]
        bad = [v for v in choice.values if v not in CHOICE_KINDS]
        if bad:
            raise _bad(f"{where}, choice {ref!r}",
                       f"{bad[0]!r:.40} is not a layer kind ({', '.join(CHOICE_KINDS)})")
    space = Space(str(raw.get("name", Path(where).stem)), str(raw.get("description", "")), choices,
                  raw["network"], where)
    if space.size > MAX_CANDIDATES:
        raise _bad(where, f"{space.size:.3g} candidates is more than {MAX_CANDIDATES:.0e}")
    space.expand(next(space.ids()))  # the first candidate must be a valid network (the rest: when costed)
    return space


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        m = _REF.match(node)
        if m:
            yield m.group(1)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _refs(k)
            yield from _refs(v)


def _kind_refs(node: Any) -> Iterator[str]:
    """The choices that give the kind of a `choice` layer."""
    if isinstance(node, list):
        for v in node:
            yield from _kind_refs(v)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k == "choice" and isinstance(v, dict) and isinstance(v.get("kind"), str):
                m = _REF.match(v["kind"])
                if m:
                    yield m.group(1)
            yield from _kind_refs(v)


def _substitute(node: Any, values: dict[str, Any]) -> Any:
    """The template with every "$name" replaced by its value (a list value spliced into its list)."""
    if isinstance(node, str):
        m = _REF.match(node)
        return values[m.group(1)] if m else node
    if isinstance(node, list):
        out: list[Any] = []
        for v in node:
            m = _REF.match(v) if isinstance(v, str) else None
            if m and isinstance(values[m.group(1)], list):
                out += [_substitute(x, values) for x in values[m.group(1)]]
            else:
                out.append(_substitute(v, values))
        return out
    if isinstance(node, dict):
        return {_substitute(k, values): _substitute(v, values) for k, v in node.items()}
    return node


def _choice_layers(node: Any) -> Any:
    """Each `choice: {kind: K, ...}` layer as the network spec's layer of kind K."""
    if isinstance(node, list):
        return [_choice_layers(v) for v in node]
    if isinstance(node, dict):
        if len(node) == 1 and "choice" in node:
            return _one_choice(node["choice"])
        return {k: _choice_layers(v) for k, v in node.items()}
    return node


def _one_choice(opts: Any) -> dict[str, Any]:
    if not isinstance(opts, dict):
        raise BadInput(f"a choice layer is 'choice: {{kind: K, ...}}', got {opts!r:.40}")
    unknown = set(opts) - CHOICE_OPTIONS
    if unknown:
        raise BadInput(f"a choice layer has no option(s) {', '.join(sorted(map(str, unknown)))}")
    kind = opts.get("kind")
    if kind not in _KEEP:
        raise BadInput(f"a choice layer's kind is one of {', '.join(CHOICE_KINDS)}, got {kind!r:.40}")
    key, keep = _KEEP[kind]
    stride = opts.get("stride", 1)
    if kind == "pointwise" and stride not in (1, [1, 1]):  # a strided 1x1 conv: the spec's conv with k 1
        key, keep = "conv", ("filters", "stride", "bias", "scale", "name")
        return {key: {**{k: opts[k] for k in keep if k in opts}, "k": 1, "padding": "valid"}}
    if kind == "grouped" and not (isinstance(opts.get("groups"), int) and opts["groups"] > 1):
        raise BadInput("a grouped choice layer needs 'groups' > 1")
    return {key: {k: opts[k] for k in keep if k in opts}}


# ---------------------------------------------------------------------------------------------- costing

@dataclass(frozen=True)
class Candidate:
    """One design of the space, costed exactly. Counts are Python ints; bytes at the network's dtype."""

    id: str
    index: int
    choices: dict[str, str]
    alpha: float
    resolution: int
    params: int  # learnable: weights + bias + BN affine (PyTorch's sum of numel)
    weights: int  # conv/linear weights (the MobileNets paper's count)
    buffers: int  # BN running statistics
    macs: int
    activations: int  # the inference activation peak: the largest set of tensors alive at once
    training_memory: int  # the training step's peak (weights, gradients, optimizer state, saved activations)
    rows: list[LayerCost] = field(compare=False, repr=False)
    sources: list[tuple[int, ...]] = field(compare=False, repr=False)

    @property
    def keras_params(self) -> int:
        """Keras' 'Total params' (count_params()): the learnable parameters and the BN statistics."""
        return self.params + self.buffers

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def fields(self) -> dict[str, int | float]:
        """The figures a --score expression may name."""
        return {"params": self.params, "keras_params": self.keras_params, "weights": self.weights,
                "buffers": self.buffers, "macs": self.macs, "flops": self.flops, "activations": self.activations,
                "training_memory": self.training_memory}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "choices": self.choices, "alpha": self.alpha,
                "resolution": self.resolution, **self.fields()}


def activation_peak(rows: list[LayerCost], sources: list[tuple[int, ...]]) -> int:
    """Bytes of the largest set of activations alive at once in a forward pass that frees each tensor after its
    last reader (the input batch included; no in-place ops): what inference needs beside the weights."""
    if not rows:
        return 0
    size = rows[0].itemsize
    last: dict[int, int] = {}
    for i, srcs in enumerate(sources):
        for s in srcs:
            last[s] = i
    nbytes = {-1: size * numel(rows[0].input_shape)}
    live = {-1}
    peak = 0
    for i, row in enumerate(rows):
        nbytes[i] = size * numel(row.output_shape)
        live.add(i)
        peak = max(peak, sum(nbytes[t] for t in live))
        live = {t for t in live if last.get(t, len(rows)) > i}
    return peak


def cost(space: Space, pick: tuple[int, ...], *, batch: int = 1, dtype: str = "float32",
         optimizer: str = "adam") -> Candidate:
    """One candidate: expanded and costed by the network engine."""
    from dscalc.cost import training

    spec, alpha, resolution = space.expand(pick)
    try:
        rows, sources = N.dataflow(spec, alpha=alpha, resolution=resolution, batch=batch, dtype=dtype)
    except BadInput as e:  # the network's rules broken by this candidate: its message names the space and candidate
        if e.option != "network":
            raise
        raise BadInput(e.rule) from None
    tot = totals(rows)
    memory = training.network(rows, sources, optimizer).memory
    return Candidate(space.label(pick), space.index(pick), space.picked(pick), alpha,
                     resolution if resolution is not None else spec.input[1], tot["params"], tot["weights"],
                     tot["buffers"], tot["macs"], activation_peak(rows, sources), memory.peak, rows, sources)


# ----------------------------------------------------------------------------------------------- values

_COUNT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_count(text: str, option: str) -> int:
    """`300k`, `1.5M`, `2G`, `300,000` or `300000` -> an exact count (k = 10^3, M = 10^6, G = 10^9)."""
    m = re.fullmatch(r"\s*(\d[\d_,]*(?:\.\d+)?)\s*([A-Za-z]?)\s*", text)
    if m is None or m.group(2).lower() not in _COUNT or len(text) > 40:
        raise BadInput(f"expected a count like 300k, 1.5M or 300000, got {text[:40]!r}", option)
    from fractions import Fraction

    value = Fraction(m.group(1).replace(",", "").replace("_", "")) * _COUNT[m.group(2).lower()]
    if value.denominator != 1:
        raise BadInput(f"is not a whole count: {text[:40]!r}", option)
    return int(value)


def parse_seconds(text: str, option: str) -> float:
    """`3ms`, `250us`, `0.5s` -> seconds (a unit is required)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(s|ms|us|µs|ns)\s*", text)
    if m is None:
        raise BadInput(f"expected a time like 3ms, 250us or 0.5s, got {text[:40]!r}", option)
    value = float(m.group(1)) * _TIME[m.group(2)]
    if not (math.isfinite(value) and value > 0):
        raise BadInput(f"must be a positive time, got {text[:40]!r}", option)
    return value

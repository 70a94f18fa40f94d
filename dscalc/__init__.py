"""dscalc: exact cost of convolutions, standard vs depthwise-separable - and of whole models.

The public API: one function per command, with the CLI's option names and defaults, each returning a typed,
frozen study (`.rows`, `.totals`, `.to_dict()` - the CLI's JSON -, `.to_pandas()`, a table in a terminal or in
Jupyter)::

    import dscalc
    dscalc.layer(k=3, cin=64, cout=128, size=112)       # LayerStudy
    dscalc.network("mobilenet_v1", alpha=0.5)           # NetworkStudy
    dscalc.profile(model, (1, 3, 224, 224))             # ModelStudy (a module in memory, a path, torchvision:NAME)
    dscalc.compare(cin=64, cout=128, k=3, size=112)     # CompareStudy
    dscalc.sweep(cin="16,32", size=8)                   # SweepStudy
    dscalc.device()                                     # DeviceStudy
    with dscalc.count() as c:                           # c.result: a ModelStudy, like FlopCounterMode
        model(x)

and the cost engine (pure Python, no torch): `conv`, `depthwise`, `pointwise`, `linear`, `separable_of`. Bad
arguments raise `dscalc.BadInput` with the CLI's one-line message; nothing is printed. Importing dscalc is light:
torch is imported only by the functions that run a model.

Layout (see ARCHITECTURE.md): `dscalc.cost` (exact counts, no torch) <- `dscalc.trace` (real models) and
`dscalc.measure` (timing, ceilings, prediction) <- `dscalc.study` (one function per command) <- `dscalc.report`
(draws a study) <- `dscalc.cli`.
"""

from typing import Any

from dscalc.cost.kinds import separable_of
from dscalc.cost.layers import conv, depthwise, linear, pointwise
from dscalc.errors import BadInput, RuntimeFailure

#: name -> (module, attribute), imported on first use: `import dscalc` stays as light as the cost engine
_LAZY = {
    "layer": ("dscalc.study.layer", "layer"),
    "network": ("dscalc.study.network", "network"),
    "profile": ("dscalc.study.model", "profile"),
    "compare": ("dscalc.study.compare", "compare"),
    "sweep": ("dscalc.study.sweep", "sweep"),
    "device": ("dscalc.study.device", "device"),
    "explain": ("dscalc.study.explain", "explain"),
    "search": ("dscalc.study.search", "search"),
    "count": ("dscalc.study.count", "count"),
    "TrainingOptions": ("dscalc.study.options", "TrainingOptions"),
    **{name: (f"dscalc.study.{module}", name) for name, module in (
        ("LayerStudy", "layer"), ("NetworkStudy", "network"), ("NetworkListStudy", "network"), ("ModelStudy", "model"),
        ("CompareStudy", "compare"), ("SweepStudy", "sweep"), ("DeviceStudy", "device"), ("Run", "records"),
        ("Totals", "records"), ("Memory", "records"))},
    "ExplainStudy": ("dscalc.study.explain", "ExplainStudy"),
    "SearchStudy": ("dscalc.study.search", "SearchStudy"),
}

__all__ = ["conv", "depthwise", "linear", "pointwise", "separable_of", "BadInput", "RuntimeFailure", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dscalc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

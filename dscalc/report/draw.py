"""One entry point from a study to its Report: the drawing module of the study's command."""

from __future__ import annotations

import importlib
from typing import Any

from dscalc.report.model import Report

#: study class -> (module of dscalc.report, function)
DRAW = {"LayerStudy": ("layer", "draw"), "NetworkStudy": ("network", "draw"),
        "NetworkListStudy": ("network", "builtins"), "ModelStudy": ("profile", "draw"),
        "CompareStudy": ("compare", "draw"), "SweepStudy": ("sweep", "draw"), "DeviceStudy": ("device", "draw"),
        "ExplainStudy": ("explain", "draw"), "SearchStudy": ("search", "draw")}


def draw(study: Any) -> Report:
    """The Report (JSON data, CSV records, grids) of any study."""
    module, fn = DRAW[type(study).__name__]
    report: Report = getattr(importlib.import_module(f"dscalc.report.{module}"), fn)(study)
    return report

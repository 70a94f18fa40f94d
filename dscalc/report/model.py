"""What a command produces: a `Report` - the JSON document, the CSV rows, and the grids people read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dscalc.cost.kinds import WEIGHTED

#: the version of the JSON document every command writes (`schema_version`; dscalc/report/schema.json)
SCHEMA_VERSION = 1

#: the counting conventions, stated in every JSON document
CONVENTIONS = {
    "macs": "multiply-accumulates; bias additions excluded",
    "flops": "2 x macs",
    "params": "learnable parameters: weights + bias (+ norm affine)",
    "weights": "conv/linear weights only",
    "bytes": "input + output + parameters, each read or written once, at the row's dtype",
    "intensity": "flops / bytes",
    "bilinear": "nn.Bilinear: one MAC per term x1_i W_oij x2_j, batch x out x in1 x in2",
    "kinds": "a row's kind says what its module is: any nn.Linear is linear, products inside SDPA or "
             "MultiheadAttention's scores/values attention, inside LSTM/GRU/RNN recurrent, functional products matmul",
}


#: the network rows a table shows without --all-layers: what has weights or changes the shape
COMPUTE_KINDS = set(WEIGHTED) | {"maxpool", "avgpool", "gap", "add", "concat"}


@dataclass
class Column:
    """A column of a grid. `number` cells are never cut or wrapped; `name` cells fold onto more lines;
    `text` cells wrap at spaces (so the numbers inside them stay whole)."""

    header: str
    justify: Literal["left", "right"] = "right"
    role: Literal["number", "name", "text"] = "number"


def name(header: str) -> Column:
    return Column(header, "left", "name")


def text(header: str) -> Column:
    return Column(header, "left", "text")


@dataclass
class Grid:
    """A human-readable table: what `table` and `markdown` draw."""

    title: str
    columns: list[Column]
    rows: list[list[str]] = field(default_factory=list)
    sections: set[int] = field(default_factory=set)  # row indices after which a rule is drawn
    caption: str = ""
    notes: list[str] = field(default_factory=list)  # plain lines printed below the table

    def add(self, *cells: str, end_section: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns in {self.title!r}")
        self.rows.append(list(cells))
        if end_section:
            self.sections.add(len(self.rows) - 1)


@dataclass
class Report:
    """`data` is the JSON document (schema_version is added when rendered), `records` the CSV rows (one flat or
    nested dict per row; nested keys become dotted columns), `grids` what people read."""

    command: str
    data: dict[str, Any]
    records: list[dict[str, Any]]
    grids: list[Grid]

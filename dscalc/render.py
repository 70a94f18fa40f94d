"""One place that turns a report into text: a rich table, JSON, CSV or Markdown; and writes it out.

Commands build a `Report` (machine data + a human grid) and hand it here; nothing else prints.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from dscalc.errors import BadInput


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


@dataclass
class Column:
    header: str
    justify: str = "right"  # left | right
    wrap: bool = False  # free text that folds onto more lines instead of widening the table


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
        self.rows.append(list(cells))
        if end_section:
            self.sections.add(len(self.rows) - 1)


@dataclass
class Report:
    """What a command produces: `data` for JSON, `records` for CSV (one flat dict per row), `grids` for people."""

    data: dict[str, Any]
    records: list[dict[str, Any]]
    grids: list[Grid]


def render(report: Report, fmt: Format, *, width: int | None = None, color: bool = False) -> str:
    """The report as text in the chosen format."""
    if fmt is Format.json:
        import json

        return json.dumps(report.data, indent=2) + "\n"
    if fmt is Format.csv:
        return _csv(report.records)
    if fmt is Format.markdown:
        return "\n".join(_markdown(g) for g in report.grids)
    return _rich(report.grids, width=width, color=color)


def _csv(records: list[dict[str, Any]]) -> str:
    import csv

    buf = io.StringIO()
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: _csv_cell(v) for k, v in r.items()})
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return value


def _markdown(grid: Grid) -> str:
    lines = [f"**{grid.title}**", ""] if grid.title else []
    lines.append("| " + " | ".join(c.header for c in grid.columns) + " |")
    lines.append("|" + "|".join("---:" if c.justify == "right" else ":---" for c in grid.columns) + "|")
    for row in grid.rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    if grid.caption:
        lines += ["", f"_{grid.caption}_"]
    if grid.notes:
        lines += ["", "```", *grid.notes, "```"]
    return "\n".join(lines) + "\n"


def _rich(grids: list[Grid], *, width: int | None, color: bool) -> str:
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(
        file=buf, width=width or shutil.get_terminal_size((100, 24)).columns, force_terminal=color,
        no_color=not color, highlight=False, emoji=False,
    )
    for i, grid in enumerate(grids):
        if i:
            console.print()
        table = Table(
            title=grid.title or None, caption=grid.caption or None, box=box.SIMPLE_HEAD,
            title_style="bold", caption_justify="left", pad_edge=False,
        )
        widths = [max([len(c.header)] + [len(row[i]) for row in grid.rows]) for i, c in enumerate(grid.columns)]
        # numbers never get cut; the name column (first) folds to what room the others leave, 16 at least
        rest = sum(w + 2 for w, c in zip(widths[1:], grid.columns[1:]) if not c.wrap)
        first = max(min(widths[0], 16), min(widths[0], console.width - rest - 2))
        for i, col in enumerate(grid.columns):
            justify: Any = col.justify
            if i == 0:
                table.add_column(col.header, justify=justify, overflow="fold", width=first)
            elif col.wrap:
                table.add_column(col.header, justify=justify, overflow="fold", ratio=1)
            else:
                table.add_column(col.header, justify=justify, no_wrap=True, min_width=widths[i])
        for j, row in enumerate(grid.rows):
            table.add_row(*row, end_section=j in grid.sections)
        console.print(table)
        buf.writelines(note + "\n" for note in grid.notes)
    return buf.getvalue()


def bar(share: float, width: int = 10) -> str:
    """A share of 0..1 as a bar of eighth blocks."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else "")


def emit(text: str, output: Path | None) -> None:
    """Print to stdout, or write `output` whole: a temporary file beside it, then an atomic rename."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(output)
    if target.is_dir():
        raise BadInput(f"{target} is a directory", "output")
    import tempfile

    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"directory {parent} does not exist", "output")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise BadInput(f"cannot write to {parent}: {e.strerror}", "output") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise BadInput(f"cannot write {target}: {e.strerror}", "output") from None

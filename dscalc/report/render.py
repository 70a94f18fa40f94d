"""One place that turns a report into text - a rich table, JSON, CSV or Markdown - and writes it out.

Tables never cut a number: number columns always get their full width; names fold and free text wraps; when
even that does not fit the terminal, the table is split into column groups that each repeat the name column.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
import textwrap
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from dscalc.errors import BadInput, RuntimeFailure, closed, printable, silence
from dscalc.report.model import SCHEMA_VERSION, Column, Grid, Report


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


#: the narrowest terminal a table is laid out for (narrower ones get the 60-column layout)
MIN_WIDTH = 60
#: the narrowest a folding name column gets
NAME_MIN = 12
#: the narrowest a wrapping text column gets
TEXT_MIN = 14


def render(report: Report, fmt: Format, *, width: int | None = None, color: bool = False,
           encoding: str = "utf-8") -> str:
    """The report as text in the chosen format; a table for an output whose encoding lacks its drawing characters
    is drawn in ASCII (laid out after the characters are spelled out, so it still fits)."""
    if fmt is Format.json:
        import json

        return json.dumps({"schema_version": SCHEMA_VERSION, **report.data}, indent=2, allow_nan=False,
                          default=_json_default) + "\n"
    if fmt is Format.csv:
        return csv_text(report.records)
    if fmt is Format.markdown:
        return "\n".join(_markdown(_escaped(g)) for g in report.grids)
    grids = [_escaped(g) for g in report.grids]  # names from files: no control character reaches the terminal
    grids = grids if _carries(encoding) else [_plain_grid(g) for g in grids]
    return _rich(grids, width=width, color=color, ascii_box=not _carries(encoding))


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# ------------------------------------------------------------------------------------------------- CSV

def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted columns (separable.macs); a list of numbers becomes 1x64x56x56; a list of
    lists (padding pairs) becomes JSON text."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        column = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{column}."))
        elif isinstance(value, (list, tuple)):
            if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
                out[column] = "x".join(str(v) for v in value)
            else:
                import json

                out[column] = json.dumps(value, separators=(",", ":"))
        else:
            out[column] = value
    return out


def csv_text(records: list[dict[str, Any]]) -> str:
    import csv

    flat = [flatten(r) for r in records]
    columns: list[str] = []
    for r in flat:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------- Markdown

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


# ----------------------------------------------------------------------------------------------- table

def _cell_min(col: Column, cells: list[str]) -> int:
    """The narrowest a column can be without cutting anything that must stay whole."""
    words = [w for c in cells for w in c.split()]
    header_word = min(max((len(w) for w in col.header.split()), default=0), NAME_MIN)  # headers may fold
    if col.role == "number":
        return max([header_word] + [len(c) for c in cells])
    natural = max([len(col.header)] + [len(c) for c in cells])
    if col.role == "text":  # wraps at spaces: its longest word must fit
        return max(header_word, min(natural, max([TEXT_MIN] + [len(w) for w in words])))
    return max(header_word, min(natural, NAME_MIN))


def _natural(col: Column, cells: list[str]) -> int:
    return max([len(col.header)] + [len(c) for c in cells])


def _table_width(widths: list[int]) -> int:
    """What rich draws for these column widths (SIMPLE_HEAD box, no edge padding): 3 between columns, 1 each side."""
    return sum(widths) + 3 * (len(widths) - 1) + 2


def _shown(grid: Grid) -> list[int]:
    """The columns to draw: all but those with no header and no content (a note column nothing needed)."""
    return [i for i, c in enumerate(grid.columns) if c.header or any(row[i] for row in grid.rows)] or [0]


def layout(grid: Grid, width: int) -> list[tuple[list[int], list[int]]]:
    """Column groups and their widths. One group when the table fits; otherwise groups that each start with
    the first (name) column."""
    cells = [[row[i] for row in grid.rows] for i in range(len(grid.columns))]
    low = [max(1, _cell_min(c, cells[i])) for i, c in enumerate(grid.columns)]
    high = [max(1, _natural(c, cells[i])) for i, c in enumerate(grid.columns)]
    shown = _shown(grid)
    groups: list[list[int]] = []
    if _table_width([low[i] for i in shown]) <= width or len(shown) == 1:
        groups = [shown]
    else:
        current: list[int] = []
        for i in shown[1:]:
            if current and _table_width([low[shown[0]]] + [low[j] for j in current + [i]]) > width:
                groups.append([shown[0], *current])
                current = []
            current.append(i)
        groups.append([shown[0], *current])
    out = []
    for group in groups:
        widths = [low[i] for i in group]
        spare = width - _table_width(widths)
        for pos, i in enumerate(group):  # give what is left to the columns that fold or wrap, in order
            if spare <= 0:
                break
            grow = min(spare, high[i] - widths[pos])
            if grow > 0:
                widths[pos] += grow
                spare -= grow
        out.append((group, widths))
    return out


def _carries(encoding: str) -> bool:
    """Whether an output in this encoding can carry what tables draw with (rules, superscripts, bars)."""
    try:
        "─²×·µ█▏…".encode(encoding)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _escaped(g: Grid) -> Grid:
    """The grid with control characters spelled as escapes (errors.printable) in every piece of text it draws."""
    t = printable
    return replace(g, title=t(g.title), columns=[replace(c, header=t(c.header)) for c in g.columns],
                   rows=[[t(x) for x in row] for row in g.rows], caption=t(g.caption), notes=[t(n) for n in g.notes])


def _plain_grid(g: Grid) -> Grid:
    t = _ascii
    return replace(g, title=t(g.title), columns=[replace(c, header=t(c.header)) for c in g.columns],
                   rows=[[t(x) for x in row] for row in g.rows], caption=t(g.caption), notes=[t(n) for n in g.notes])


def _rich(grids: list[Grid], *, width: int | None, color: bool, ascii_box: bool = False) -> str:
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table

    head = box.Box(str(box.SIMPLE_HEAD).replace("─", "-")) if ascii_box else box.SIMPLE_HEAD

    width = max(width or shutil.get_terminal_size((100, 24)).columns, MIN_WIDTH)
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color, highlight=False, emoji=False,
                      soft_wrap=False)
    for n, grid in enumerate(grids):
        if n:
            console.print()
        groups = layout(grid, width)
        for g, (group, widths) in enumerate(groups):
            if g:
                console.print()
            last = g == len(groups) - 1
            title = grid.title if g == 0 else "(continued)" if grid.title else ""
            table = Table(title=title or None, box=head, title_style="bold", pad_edge=False)
            for i, w in zip(group, widths):
                col = grid.columns[i]
                header = "\n".join(textwrap.wrap(col.header, w)) or col.header
                table.add_column(header, justify=col.justify, width=w, no_wrap=col.role == "number",
                                 overflow="fold" if col.role == "name" else "ellipsis" if col.role == "number"
                                 else "fold")
            for j, row in enumerate(grid.rows):
                table.add_row(*(row[i] for i in group), end_section=j in grid.sections)
            console.print(table)
            if last and grid.caption:
                buf.write("\n".join(textwrap.wrap(grid.caption, width - 1, break_long_words=False,
                                                 break_on_hyphens=False)) + "\n")
        for note in grid.notes:
            buf.write(_wrap_note(note, width))
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def _wrap_note(note: str, width: int) -> str:
    """A note line, wrapped at spaces where it is longer than the terminal (numbers never split)."""
    if len(note) <= width:
        return note + "\n"
    indent = " " * (len(note) - len(note.lstrip()) + 2)
    lines = textwrap.wrap(note, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def bar(share: float, width: int = 10) -> str:
    """A share of 0..1 as a bar of eighth blocks."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + ("▏▎▍▌▋▊▉"[rest - 1] if rest else "")


# ---------------------------------------------------------------------------------------------- output

#: what a table draws with, spelled for an output whose encoding lacks it (LC_ALL=POSIX, PYTHONIOENCODING=ascii)
_PLAIN = str.maketrans({"─": "-", "━": "-", "│": "|", "²": "^2", "³": "^3", "×": "x", "·": "*", "µ": "u",
                        "…": "...", "≤": "<=", "≥": ">=", "→": "->", "✓": "ok", "✗": "x", "−": "-", "≈": "~",
                        "█": "#", **{c: "+" for c in "▏▎▍▌▋▊▉"}})


def _ascii(text: str) -> str:
    return text.translate(_PLAIN).encode("ascii", errors="replace").decode("ascii")


def encodable(text: str, encoding: str) -> str:
    """The text as the output's encoding can carry it: unchanged when it can, else with the drawing and unit
    characters spelled in ASCII (and anything else left replaced by '?'), never a UnicodeEncodeError."""
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        pass
    plain = text.translate(_PLAIN)  # a last resort: render() already drew for this encoding
    try:
        return plain.encode(encoding, errors="replace").decode(encoding)
    except LookupError:
        return plain.encode("ascii", errors="replace").decode("ascii")


def check_output(output: str | Path | None, inputs: list[str] | list[Path] | list[str | Path]) -> None:
    """Before any work: refuse an --output that names a directory (one that exists, or a trailing slash), a name the
    file system refuses, or one of the command's `inputs` (the same file, by inode: the report would replace the
    model or spec it was made from). Bad input, one line, exit 2."""
    if output is None or str(output) == "-":
        return
    shown = printable(str(output))
    if str(output).endswith(("/", os.sep)):
        raise BadInput(f"{shown} is a directory (a trailing slash); give a file name", "output")
    try:
        st = os.stat(output)
    except FileNotFoundError:
        return
    except OSError as e:
        _refuse(e, shown)
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{shown} is a directory", "output")
    for given in inputs:
        try:  # a model given as path.py:Name is the file path.py
            other = os.stat(given) if os.path.exists(given) else os.stat(str(given).rpartition(":")[0] or given)
        except (OSError, ValueError):
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise BadInput(f"{shown} is the input file {printable(str(given))}: the report would replace it; "
                           "give another file", "output")


def emit(text: str, output: str | Path | None) -> None:
    """Print to stdout (no --output, or '-'); write a device node or FIFO directly; write a regular file (or a
    symlink's target) whole: a temporary file beside it, then an atomic rename, keeping its permissions.
    A write that fails leaves what was there untouched and says so in one line (exit 1); a closed or full stdout
    too. A directory (a trailing slash) is refused (exit 2); so is an input file, by `check_output` before."""
    if output is None or str(output) == "-":
        _print(text)
        return
    shown = printable(str(output))
    if str(output).endswith(("/", os.sep)):
        raise BadInput(f"{shown} is a directory (a trailing slash); give a file name", "output")
    try:
        target = Path(os.path.realpath(output)) if Path(output).is_symlink() else Path(output)
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    except OSError as e:
        _refuse(e, shown)
    mode = st.st_mode if st is not None else None
    if mode is not None and stat.S_ISDIR(mode):
        raise BadInput(f"{shown} is a directory", "output")
    if mode is not None and not stat.S_ISREG(mode):  # /dev/null, a FIFO, a terminal: write through it
        try:
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise RuntimeFailure(f"--output: cannot write {shown}: {e.strerror}") from None
        return
    _replace_whole(target, text, mode, shown=shown)


def _print(text: str) -> None:
    """The report on stdout; a closed stdout (`>&-`) or a failed write (`>/dev/full`, a closed pipe) is one line,
    exit 1, and what is left buffered is dropped (no second error when Python flushes at exit)."""
    if closed("stdout"):
        raise RuntimeFailure("cannot print the report: standard output is closed (give --output FILE)")
    try:
        sys.stdout.write(encodable(text, getattr(sys.stdout, "encoding", None) or "utf-8"))
        sys.stdout.flush()
    except OSError as e:
        silence(1)
        raise RuntimeFailure(f"cannot print the report to standard output: {e.strerror or e}") from None


def _refuse(e: OSError, shown: str) -> NoReturn:
    """An --output path the file system refuses outright: a name too long or a folder in the path that is a file
    is bad input (exit 2); anything else (permissions, I/O) a failed write (exit 1)."""
    if e.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP):
        raise BadInput(f"cannot write {shown}: {e.strerror}", "output") from None
    raise RuntimeFailure(f"--output: cannot write {shown}: {e.strerror}") from None


def _replace_whole(target: Path, text: str, mode: int | None, shown: str) -> None:
    import tempfile

    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"directory {printable(str(parent))} does not exist", "output")
    try:  # a short temporary name: any name the file system accepts for the output fits beside it
        fd, tmp = tempfile.mkstemp(prefix=".dscalc-", suffix=".tmp", dir=parent)
    except OSError as e:
        raise RuntimeFailure(f"--output: cannot write to {printable(str(parent))}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno in (errno.ENAMETOOLONG, errno.ENOTDIR):
            raise BadInput(f"cannot write {shown}: {e.strerror}", "output") from None
        raise RuntimeFailure(f"--output: cannot write {shown}: {e.strerror}") from None


# ------------------------------------------------------------------------------------------------- HTML

def html(report: Report) -> str:
    """The report's grids as HTML tables (what Jupyter shows): a caption per title, the notes below."""
    from html import escape

    parts = []
    for grid in report.grids:
        head = "".join(f'<th style="text-align:{c.justify}">{escape(c.header)}</th>' for c in grid.columns)
        body = []
        for i, row in enumerate(grid.rows):
            rule = ' style="border-bottom:1px solid"' if i in grid.sections else ""
            cells = "".join(f'<td style="text-align:{c.justify}">{escape(cell)}</td>'
                            for c, cell in zip(grid.columns, row))
            body.append(f"<tr{rule}>{cells}</tr>")
        caption = f"<caption><b>{escape(grid.title)}</b></caption>" if grid.title else ""
        parts.append(f'<table class="dscalc">{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
                     "</tbody></table>")
        below = ([grid.caption] if grid.caption else []) + list(grid.notes)
        if below:
            parts.append("<pre>" + escape("\n".join(below)) + "</pre>")
    return "<div>" + "".join(parts) + "</div>"

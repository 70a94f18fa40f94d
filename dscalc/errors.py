"""The two kinds of failure dscalc reports: bad input (exit 2) and a runtime failure (exit 1)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator


class DscalcError(Exception):
    """Base class: a failure with a one-line message meant for the user."""

    exit_code = 1


class BadInput(DscalcError):
    """Something the user supplied breaks a rule; `option` names it (e.g. 'cin' for --cin)."""

    exit_code = 2

    def __init__(self, message: str, option: str | None = None) -> None:
        self.option = option
        self.rule = message
        super().__init__(f"{option}: {message}" if option else message)

    #: arguments given by position on the command line, spelled as in --help (NETWORK, MODEL)
    POSITIONAL = frozenset({"network", "model"})

    def for_cli(self) -> str:
        """The message with the option spelled as on the command line (--cin, or MODEL for an argument)."""
        if self.option is None:
            return self.rule
        if self.option in self.POSITIONAL:
            return f"{self.option.upper()}: {self.rule}"
        return f"--{self.option.replace('_', '-')}: {self.rule}"


class RuntimeFailure(DscalcError):
    """Valid input that could not be carried out (a forward that raises, CUDA missing)."""

    exit_code = 1


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name when it has none), at most `limit` characters."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


# A Ctrl-C from the user ends the run (exit 130); a KeyboardInterrupt or SystemExit that a model's own code raises
# is that model's failure (exit 1). The CLI installs `on_sigint` so the two can be told apart.
_interrupted = False


def on_sigint(signum: int, frame: object) -> None:
    """SIGINT handler: remember that the user pressed Ctrl-C, then interrupt as Python does."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def interrupted() -> bool:
    """True once the user pressed Ctrl-C (under the CLI's handler)."""
    return _interrupted


def from_user_code(e: BaseException, where: str) -> RuntimeFailure:
    """The failure of the user's own code (import, constructor, forward): one line naming where it happened.
    A SystemExit says its status; a KeyboardInterrupt the user did not cause says so."""
    if isinstance(e, SystemExit):
        return RuntimeFailure(f"{where} called sys.exit({e.code!r})")
    if isinstance(e, KeyboardInterrupt):
        return RuntimeFailure(f"{where} raised KeyboardInterrupt")
    return RuntimeFailure(f"{where} raised {type(e).__name__}: {first_line(e)}")


@contextlib.contextmanager
def user_code(what: str) -> Iterator[None]:
    """Catch what the user's code raises - even SystemExit and a KeyboardInterrupt it raised itself - as a failure
    naming `what`; dscalc's own errors and the user's real Ctrl-C pass through."""
    try:
        yield
    except DscalcError:
        raise
    except KeyboardInterrupt:
        if interrupted():
            raise
        raise from_user_code(KeyboardInterrupt(), what) from None
    except (Exception, SystemExit) as e:
        raise from_user_code(e, what) from None


def missing(module: str, extra: str, what: str) -> RuntimeFailure:
    """An optional dependency that is not installed: one line naming the dscalc extra that brings it (exit 1)."""
    install = f"pip install 'dscalc[{extra}]'" if extra else f"pip install {module}"
    return RuntimeFailure(f"{what} needs {module}, which is not installed: {install}")


# ------------------------------------------------------------------------------------ text from files, streams

#: characters that must not reach a terminal as they are: C0 and C1 controls (ESC starts a sequence that can clear
#: the screen or repaint numbers; CR and backspace overwrite; a newline breaks a one-line error), DEL, and the
#: invisible format characters that reorder or hide text (bidi overrides, zero-width characters)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL_KEEP_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064"
                                   "\u2066-\u2069\ufeff]")


def _escape_one(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, keep_newlines: bool = False) -> str:
    """`text` (a name or value that came from a file) safe to print: every control character spelled as an escape
    (ESC -> \\x1b, a newline -> \\x0a unless kept), everything else unchanged. The one escape of the package: tables
    (report.render) and error lines (`say`) both go through it; JSON keeps the raw string."""
    if text.isprintable():  # the common case, at C speed: every escaped character is one Python calls unprintable
        return text
    return (_CONTROL_KEEP_NEWLINE if keep_newlines else _CONTROL).sub(_escape_one, text)


#: the standard streams that were closed when dscalc started (a cron job's `>&-`); /dev/null now holds their
#: file descriptors so that no file dscalc opens later takes the number 1 or 2 (and receives what a library prints)
_closed: set[str] = set()


def guard_streams() -> None:
    """Give each closed standard stream (fd 0, 1, 2) /dev/null and a Python stream object, and remember it was
    closed: the run goes on (a report for --output is still written; a message to a closed stderr is dropped but
    the exit status stays), and a report meant for a closed stdout fails in one line (`report.render.emit`)."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            fd_open = True
        except OSError:
            fd_open = False
        if fd_open and getattr(sys, name) is not None:
            continue
        _closed.add(name)
        mode = "r" if fd == 0 else "w"
        if fd_open:  # closed at start, its number since taken by a file someone opened: leave that file alone
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115 - lives as sys.<name>
            continue
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, mode, encoding="utf-8", errors="replace", closefd=False))  # noqa: SIM115


def closed(name: str) -> bool:
    """Whether the standard stream `name` ('stdout', 'stderr') was closed when dscalc started."""
    return name in _closed


def silence(fd: int) -> None:
    """Point a standard stream whose writes fail (a full disk, a closed pipe) at /dev/null, so that what is still
    buffered is dropped quietly when Python flushes it at exit (instead of a second error and exit status 120)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def say(line: str) -> None:
    """One line on stderr, control characters escaped; a closed or full stderr loses the line, never the exit
    status (no error is raised)."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(printable(line) + "\n")
        stream.flush()
    except (OSError, ValueError):
        silence(2)

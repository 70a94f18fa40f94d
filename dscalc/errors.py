"""The two kinds of failure dscalc reports: bad input (exit 2) and a runtime failure (exit 1)."""

from __future__ import annotations

import contextlib
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

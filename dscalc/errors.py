"""The two kinds of failure dscalc reports: bad input (exit 2) and a runtime failure (exit 1)."""

from __future__ import annotations


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

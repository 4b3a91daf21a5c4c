"""Resolving and validating variable values before anything runs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from runbook.format.model import Runbook, Variable
from runbook.format.values import IDENTIFIER, did_you_mean

MASK = "********"
"""What is shown and written in place of a secret value."""


class VariableProblem(ValueError):
    """A value given for a variable that the runbook does not accept."""


def parse_assignment(text: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``NAME=VALUE`` from ``--var``; the value may contain ``=``. ``NAME`` alone takes the
    value of the environment's ``NAME`` (as ``docker run -e NAME`` does): a secret given so
    is on no command line, where ``ps`` and the shell's history would show it."""
    name, sep, value = text.partition("=")
    if not sep and IDENTIFIER.match(name):
        environ = os.environ if environ is None else environ
        if name not in environ:
            raise VariableProblem(
                f"--var {name}: no value: give {name}=VALUE, or set {name} in the environment"
            )
        return name, environ[name]
    if not sep or not name:
        raise VariableProblem(f"--var {text!r}: expected NAME=VALUE, or a NAME in the environment")
    return name, value


def how_to_give(var: Variable) -> str:
    """How a run with nobody to ask gets a value: a secret through the environment."""
    if var.secret:
        return f"set {var.name} in the environment and give --var {var.name} (on no command line)"
    return f"give it with --var {var.name}=..."


_NOT_UTF8 = re.compile("[\udc80-\udcff]")
"""What ``surrogateescape`` makes of a byte that is not UTF-8 (argv, the environment)."""


def check_value(var: Variable, value: str) -> None:
    """Raise :class:`VariableProblem` unless ``value`` satisfies the declaration."""
    shown = MASK if var.secret else repr(value)
    if "\0" in value:
        raise VariableProblem(f"{var.name} holds a NUL byte, which no command can be given")
    if _NOT_UTF8.search(value):  # undecodable bytes from the command line or a terminal
        raise VariableProblem(f"{var.name} holds bytes that are not UTF-8 text")
    if var.required and value == "":
        raise VariableProblem(f"{var.name} is required and must not be empty")
    if var.choices and value not in var.choices:
        raise VariableProblem(f"{var.name}={shown} is not one of: {', '.join(var.choices)}")
    if var.pattern and not re.fullmatch(var.pattern, value):
        raise VariableProblem(f"{var.name}={shown} does not match the pattern {var.pattern}")


@dataclass(frozen=True)
class Resolved:
    """Known values and where each came from (``--var`` or ``default``); the rest is asked."""

    values: Mapping[str, str]
    sources: Mapping[str, str]

    def display(self, rb: Runbook) -> dict[str, str]:
        """Values safe to show: secrets masked."""
        secret = {v.name for v in rb.variables if v.secret}
        return {k: (MASK if k in secret else v) for k, v in self.values.items()}


def resolve(rb: Runbook, given: Mapping[str, str]) -> Resolved:
    """Values from ``--var`` and defaults, each checked against its declaration."""
    declared = {v.name: v for v in rb.variables}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, value in given.items():
        var = declared.get(name)
        if var is None:
            hint = did_you_mean(name, declared) or (
                f" (declared: {', '.join(declared)})"
                if declared
                else " (the runbook declares none)"
            )
            raise VariableProblem(f"--var {name}: the runbook declares no such variable{hint}")
        check_value(var, value)
        values[name], sources[name] = value, "--var"
    for var in rb.variables:
        if var.name not in values and var.default is not None:
            values[var.name], sources[var.name] = var.default, "default"
    return Resolved(values, sources)

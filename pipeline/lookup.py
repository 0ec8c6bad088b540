"""One way to look a name up in a table of named alternatives (samplers, schedules, families,
utilities ...): an unknown name is an error that lists the known ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: str, what: str, error: type[Exception] = KeyError) -> V:
    """`table[name]`, or `error("unknown <what> '<name>' (known: [...])")`.

    Args:
        error: the exception to raise, e.g. a stage's own error type that the CLI reports.
    """
    if name in table:
        return table[name]
    raise error(f"unknown {what} '{name}' (known: {sorted(table)})")

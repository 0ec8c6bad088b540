"""One way to look a name up in a table of named alternatives (samplers, schedules, families,
utilities ...): an unknown name is an error that lists the known ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: str, what: str) -> V:
    """`table[name]`, or KeyError("unknown <what> '<name>' (known: [...])")."""
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} '{name}' (known: {sorted(table)})") from None

"""Looking a name up in a registry, with one error message for every unknown name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, what: str,
           error: type[Exception] = KeyError) -> T:
    """registry[name]; an unknown name raises `error` naming it and listing the known ones.

    Args:
        registry: name -> object (a class, a builder function, ...).
        what: what the names are, for the message (e.g. "noise schedule").
        error: the exception type to raise (a stage may have its own, e.g. a data error).
    """
    if name not in registry:
        raise error(f"unknown {what} '{name}' (known: {sorted(registry)})")
    return registry[name]

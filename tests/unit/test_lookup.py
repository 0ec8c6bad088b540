"""The shared registry lookup and its error message."""

import pytest

from pipeline.lookup import lookup


def test_lookup_returns_the_entry_or_lists_the_known_names():
    registry = {"sqrt": 1, "cosine": 2}
    assert lookup(registry, "cosine", "noise schedule") == 2
    with pytest.raises(KeyError, match=r"unknown noise schedule 'quad' \(known: \['cosine', 'sqrt'\]\)"):
        lookup(registry, "quad", "noise schedule")
    with pytest.raises(ValueError, match="unknown thing 'x'"):
        lookup(registry, "x", "thing", error=ValueError)

"""The two floor rows of every table: "copy source" and "random target" (no model, no training).

They are produced by the sample stage like any system's candidates, so the same evaluation
applies to them. "random target" draws a training target per (seed, source index).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Nothing to configure: these rows have no model."""


@dataclass(frozen=True)
class DecodeConfig:
    """Nothing to configure."""


def copy_source(sources: list[str], seeds: list[int]) -> list[list[str]]:
    """Every candidate is the source itself."""
    return [[src for _ in seeds] for src in sources]


def random_target(num_sources: int, train_targets: list[str], seeds: list[int],
                  base_seed: int) -> list[list[str]]:
    """Candidate (i, s) is a training target drawn with a generator seeded by (base, s, i)."""
    return [[train_targets[random.Random(f"{base_seed}:{s}:{i}").randrange(len(train_targets))]
             for s in seeds] for i in range(num_sources)]

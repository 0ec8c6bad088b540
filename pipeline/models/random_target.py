"""The "random target" floor row: candidate (seed s, source i) is a training target drawn with a
generator seeded by (decode.seed, s, i) — what an unrelated but fluent output scores."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models.base import Batch, GenerationOutput, Pair, TaskInfo
from pipeline.models.floors import FloorModel, floor_family


@dataclass(frozen=True)
class DecodeConfig:
    """seed: the base seed of the draws (with the candidate's seed and source index)."""

    seed: int = 0


class RandomTarget(FloorModel):
    def __init__(self, cfg: Any, task: TaskInfo):
        super().__init__(cfg, task)
        self.train_targets: Sequence[Pair] = ()

    def use_training_data(self, train: Sequence[Pair]) -> None:
        self.train_targets = train

    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        targets = self.train_targets
        if not len(targets):
            raise RuntimeError("random_target draws from the training pairs: call "
                               "use_training_data(train) first")

        def draw(s: int, i: int) -> list[int]:
            index = random.Random(f"{decode.seed}:{s}:{i}").randrange(len(targets))
            return [int(t) for t in targets[index][1]]

        return GenerationOutput([[draw(s, i) for s in seeds] for i in source_indices])


FAMILY = floor_family("random_target", RandomTarget, DecodeConfig)

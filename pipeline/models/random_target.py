"""The "random target" floor row: candidate (seed s, source i) is a training target drawn with a
generator seeded by (decode.seed, s, i) — what an unrelated but fluent output scores."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models.base import Batch, Family, GenerationOutput, Pair, TaskInfo
from pipeline.models.floors import FloorModel, ModelConfig


@dataclass(frozen=True)
class DecodeConfig:
    """seed: the base seed of the draws (with the candidate's seed and source index)."""

    seed: int = 0


class RandomTarget(FloorModel):
    def __init__(self, cfg: ModelConfig, task: TaskInfo):
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


def build(model_cfg: ModelConfig, task: TaskInfo) -> RandomTarget:
    return RandomTarget(model_cfg, task)


def from_export(config: dict[str, Any]) -> RandomTarget:
    raise TypeError("random_target has no saved model")


FAMILY = Family("random_target", ModelConfig, DecodeConfig, build, from_export, trains=False,
                describe=lambda decode: "random_target (no model)", is_floor=True)

"""The "copy source" floor row: every candidate is the source itself (no model, no training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.models.base import Batch, Family, GenerationOutput, TaskInfo
from pipeline.models.floors import FloorModel, ModelConfig


@dataclass(frozen=True)
class DecodeConfig:
    """Nothing to configure."""


class CopySource(FloorModel):
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        return GenerationOutput([[list(src) for _ in seeds] for src in batch["sources"]])


def build(model_cfg: ModelConfig, task: TaskInfo) -> CopySource:
    return CopySource(model_cfg, task)


def from_export(config: dict[str, Any]) -> CopySource:
    raise TypeError("copy_source has no saved model")


FAMILY = Family("copy_source", ModelConfig, DecodeConfig, build, from_export, trains=False,
                describe=lambda decode: "copy_source (no model)", is_floor=True)

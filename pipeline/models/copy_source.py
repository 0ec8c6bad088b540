"""The "copy source" floor row: every candidate is the source itself (no model, no training)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.models.base import Batch, GenerationOutput
from pipeline.models.floors import FloorModel, floor_family


@dataclass(frozen=True)
class DecodeConfig:
    """Nothing to configure."""


class CopySource(FloorModel):
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: DecodeConfig) -> GenerationOutput:
        return GenerationOutput([[list(src) for _ in seeds] for src in batch["sources"]])


FAMILY = floor_family("copy_source", CopySource, DecodeConfig)

"""What the two floor rows of every table share: no model, no training, candidates chosen among
existing texts. Each floor is a family module of its own (`copy_source`, `random_target`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from pipeline.models.base import Batch, Family, Pair, Seq2Seq, TaskInfo


@dataclass(frozen=True)
class ModelConfig:
    """Nothing to configure: a floor has no model."""


class FloorModel(Seq2Seq):
    """A parameter-free Seq2Seq whose batches carry the source ids as they are."""

    def __init__(self, cfg: Any, task: TaskInfo):
        super().__init__()
        self.cfg, self.task = cfg, task

    def collate(self, pairs: list[Pair]) -> Batch:
        return {"sources": [[int(i) for i in src] for src, _ in pairs]}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise TypeError(f"{type(self).__name__} is a floor row: it is not trained")

    def export_config(self) -> dict[str, Any]:
        return {}


def floor_family(name: str, model: type[FloorModel], decode_config: type) -> Family:
    """The descriptor of a floor: built at sampling time, never trained nor saved."""
    def from_export(config: dict[str, Any]) -> FloorModel:
        raise TypeError(f"{name} has no saved model")

    return Family(name, ModelConfig, decode_config, model, from_export, trains=False,
                  describe=lambda decode: f"{name} (no model)", is_floor=True)

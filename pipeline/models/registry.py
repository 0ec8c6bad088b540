"""Model families by name: the one place that maps a `family:` string to its module."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

# family name -> (module, trainable). A family module defines ModelConfig, DecodeConfig and build().
FAMILIES: dict[str, tuple[str, bool]] = {
    "diffuseq": ("pipeline.models.diffuseq", True),
    "gru_attention": ("pipeline.models.gru_attention", True),
    "transformer": ("pipeline.models.transformer", True),
    "gpt2": ("pipeline.models.gpt2", True),
    "levt": ("pipeline.models.levt", True),
    "gpvae": ("pipeline.models.gpvae", True),
    "copy_source": ("pipeline.models.reference", False),
    "random_target": ("pipeline.models.reference", False),
}


@dataclass(frozen=True)
class FamilySpec:
    name: str
    module_name: str
    trainable: bool

    @cached_property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    @property
    def model_config(self) -> type:
        return self.module.ModelConfig

    @property
    def decode_config(self) -> type:
        return self.module.DecodeConfig


def family_spec(name: str) -> FamilySpec:
    """The spec of a family; an unknown name is an error listing the known ones."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model family '{name}' (known: {sorted(FAMILIES)})")
    module_name, trainable = FAMILIES[name]
    return FamilySpec(name, module_name, trainable)

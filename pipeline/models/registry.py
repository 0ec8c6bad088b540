"""Model families by name: every module of `pipeline.models` that defines a top-level `FAMILY`.

Adding a family is adding its module (see `pipeline.models.base.Family`); nothing here lists the
families. Modules are found by reading their source (cheap: no family is imported until it is
asked for), and the family name is the module name.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
from typing import Any

from pipeline.lookup import lookup
from pipeline.models.base import Family

MODELS_DIR = Path(__file__).resolve().parent
PACKAGE = __name__.rsplit(".", 1)[0]


def _defines_family(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.Assign, ast.AnnAssign))
               and any(isinstance(t, ast.Name) and t.id == "FAMILY"
                       for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
               for node in tree.body)


@functools.cache
def family_modules() -> dict[str, str]:
    """family name -> module name, for every module under pipeline/models defining FAMILY."""
    return {path.stem: f"{PACKAGE}.{path.stem}" for path in sorted(MODELS_DIR.glob("*.py"))
            if not path.stem.startswith("_") and _defines_family(path)}


def family_names() -> list[str]:
    return sorted(family_modules())


@functools.cache
def get_family(name: str) -> Family:
    """The descriptor of a family; an unknown name is an error listing the known ones."""
    module = importlib.import_module(lookup(family_modules(), name, "model family"))
    family = module.FAMILY
    if family.name != name:
        raise TypeError(f"{module.__file__}: FAMILY.name is '{family.name}', expected the module "
                        f"name '{name}'")
    return family


def load_model(model_dir: Path, device: Any = "cpu") -> Any:
    """Rebuild a saved model with its family's `from_export` and load its weights; eval mode."""
    from pipeline.checkpoint import load_weights, read_model_config

    saved = read_model_config(model_dir)
    model = get_family(saved["family"]).from_export(saved["config"])
    load_weights(model, model_dir)
    return model.to(device).eval()


def system_configs(system: Any, where: str) -> tuple[Any, Any]:
    """The typed (ModelConfig, DecodeConfig) of a system block (a `config.SystemConfig`).

    Args:
        where: the block's dotted key for error messages, e.g. "systems.diffuseq".
    """
    from pipeline.config import build_dataclass

    family = get_family(system.family)
    return (build_dataclass(family.model_config, system.model, f"{where}.model"),
            build_dataclass(family.decode_config, system.decode, f"{where}.decode"))

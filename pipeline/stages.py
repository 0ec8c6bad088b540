"""The DAG, declared once: each stage's inputs, outputs, parameters and code.

Snakemake builds its rules from `STAGES` (workflow/rules/stages.smk) and `dvc.yaml` is generated
from it (`python -m pipeline dvc-yaml`), so the two engines cannot drift apart. An output path
depends only on its grid cell (task, system).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config import Config

RAW = "data/raw/{task}"
PROCESSED = "data/processed/{task}"
RUN = "results/{task}/{system}"
TRAIN_STATE = f"{RUN}/train_state"  # resume checkpoints: kept across reruns, never a declared output


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline; the only place its files are named."""

    name: str                                   # = CLI subcommand = Snakemake rule = DVC stage
    wildcards: tuple[str, ...]
    deps: dict[str, str]                        # role -> path template
    outs: dict[str, str]                        # role -> path template
    code: tuple[str, ...] = ()                  # entry modules; their pipeline imports count too
    metrics: tuple[str, ...] = ()               # roles among outs that are metrics files
    plots: tuple[str, ...] = ()                 # roles among outs that are plot data (dvc plots)
    directories: tuple[str, ...] = ()           # roles among outs that are folders

    def paths(self, role_paths: dict[str, str], **cell: str) -> dict[str, Path]:
        return {role: Path(template.format(**cell)) for role, template in role_paths.items()}

    def inputs(self, **cell: str) -> dict[str, Path]:
        return self.paths(self.deps, **cell)

    def outputs(self, **cell: str) -> dict[str, Path]:
        return self.paths(self.outs, **cell)


# Every job runs the CLI (its own file; its per-stage imports are the stages' business) and these.
COMMON_CODE = ("pipeline.config", "pipeline.stages", "pipeline.io", "pipeline.tracking",
               "pipeline.provenance")
CLI_FILE = "pipeline/__main__.py"

STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("download", ("task",), deps={}, outs={"raw": RAW},
          code=("pipeline.data.download",), directories=("raw",)),
    Stage("prepare", ("task",), deps={"raw": RAW}, outs={"data": PROCESSED},
          code=("pipeline.data.prepare",), directories=("data",)),
    Stage("train", ("task", "system"), deps={"data": PROCESSED}, outs={"model": f"{RUN}/model"},
          code=("pipeline.train",), directories=("model",)),
    Stage("sample", ("task", "system"), deps={"data": PROCESSED, "model": f"{RUN}/model"},
          outs={"samples": f"{RUN}/samples"},
          code=("pipeline.generate",), directories=("samples",)),
    Stage("evaluate", ("task", "system"), deps={"samples": f"{RUN}/samples", "data": PROCESSED},
          outs={"metrics": f"{RUN}/metrics.json"},
          code=("pipeline.evaluate",), metrics=("metrics",)),
    Stage("report", (), deps={},
          outs={"tables": "results/tables.md", "figures": "results/figures",
                "curves": "results/plots/bleu_vs_candidates.json"},
          code=("pipeline.report.tables",), directories=("figures",), plots=("curves",)),
]}


STAGE_HELP = {
    "download": "fetch or generate a task's raw train/valid/test.jsonl",
    "prepare": "validate the raw splits, build the tokenizer, tokenize into memory-mapped arrays",
    "train": "train one system on one task (resumes from its last checkpoint)",
    "sample": "generate the candidate sets (one file per seed) for the test set",
    "evaluate": "metrics, MBR and diversity of one system's samples -> metrics.json",
    "report": "results/tables.md and results/figures/ from all metrics files",
}


def is_trainable(cfg: Config, system: str) -> bool:
    from pipeline.models.registry import family_spec

    return family_spec(cfg.systems[system].family).trainable


def stage_inputs(cfg: Config, stage: str, **cell: str) -> dict[str, Path]:
    """The inputs of one job; a system without a model samples without the train stage."""
    deps = STAGES[stage].inputs(**cell)
    if stage == "sample" and not is_trainable(cfg, cell["system"]):
        deps.pop("model")
    if stage == "report":
        deps = {f"metrics:{t}/{s}": STAGES["evaluate"].outputs(task=t, system=s)["metrics"]
                for t, s in cfg.system_cells()}
    return deps


def cells(cfg: Config, stage: str) -> list[dict[str, str]]:
    """Every grid cell a stage runs for under this parameter file."""
    wildcards = STAGES[stage].wildcards
    if wildcards == ("task",):
        return [{"task": t} for t in cfg.tasks]
    if wildcards == ("task", "system"):
        return [{"task": t, "system": s} for t, s in cfg.system_cells()
                if stage != "train" or is_trainable(cfg, s)]
    return [{}]


def final_targets(cfg: Config) -> list[str]:
    """What `snakemake` with no target and `dvc repro` build: the tables and the figures."""
    outs = STAGES["report"].outputs()
    return [str(outs["tables"]), str(outs["figures"])]


def launcher(cfg: Config, stage: str, **cell: str) -> str:
    """`python -m` for one process; `torchrun` when a system trains data-parallel."""
    if stage == "train" and (train := cfg.systems[cell["system"]].train) and train.num_processes > 1:
        return f"torchrun --standalone --nproc_per_node {train.num_processes} -m pipeline"
    return "python -m pipeline"


def cli_command(cfg: Config, stage: str, **cell: str) -> str:
    """The shell command of one job; both engines run exactly this."""
    args = "".join(f" --{k} {v}" for k, v in cell.items())
    return f"{launcher(cfg, stage, **cell)} {stage} --params {cfg.path}{args}"


def code_files(cfg: Config, stage: str, root: Path = Path("."), **cell: str) -> list[str]:
    """The source files a job runs: its entry modules (and, for train and sample, the system's
    model family) with every pipeline module they import, so an edit reruns exactly the jobs
    whose code changed (editing LevT never retrains DiffuSeq)."""
    modules = [*COMMON_CODE, *STAGES[stage].code]
    if stage in ("train", "sample") and "system" in cell:
        from pipeline.models.registry import FAMILIES

        modules.append(FAMILIES[cfg.systems[cell["system"]].family][0])
    return sorted({CLI_FILE, *(str(p) for p in _import_closure(tuple(modules), root))})


@functools.lru_cache(maxsize=64)
def _import_closure(modules: tuple[str, ...], root: Path) -> set[Path]:
    """The files of `modules` and of every `pipeline` module they import (static, any depth)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        path = _module_file(todo.pop(), root)
        if path is None or path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return seen


def _module_file(module: str, root: Path) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py (or its package's __init__.py); None outside pipeline."""
    if module.split(".")[0] != "pipeline":
        return None
    base = root / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def param_keys(cfg: Config, stage: str, **cell: str) -> list[str]:
    """The parameter keys a job reads, as dotted paths of the parameter file (only keys the file
    holds): DVC tracks them, Snakemake hashes them, so a change reruns exactly these jobs.
    Training does not read `decode`, so changing how a system samples never retrains it."""
    task, system = cell.get("task"), cell.get("system")
    keys = {
        "download": [f"tasks.{task}.source"],
        "prepare": [f"tasks.{task}"],
        "train": [f"tasks.{task}.tokenizer", f"tasks.{task}.seq_len", f"systems.{system}.family",
                  f"systems.{system}.model", f"systems.{system}.train"],
        "sample": [f"tasks.{task}.seq_len", f"systems.{system}", "sampling",
                   "evaluation.random_target_seed"],
        "evaluate": [f"systems.{system}", "sampling", "evaluation"],
        "report": ["scale", "tasks", "systems", "sampling", "evaluation"],
    }[stage]
    raw = _raw_params(cfg.path)
    return [key for key in keys if _holds(raw, key)]


@functools.lru_cache(maxsize=8)
def _raw_params(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _holds(raw: object, key: str) -> bool:
    for part in key.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return False
        raw = raw[part]
    return True


def _resolve(cfg: Config, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def params_digest(cfg: Config, stage: str, **cell: str) -> str:
    """Hash of the sections a job reads: Snakemake reruns the job when it changes."""
    from pipeline.config import section_hash

    return section_hash(*(_resolve(cfg, key) for key in param_keys(cfg, stage, **cell)))

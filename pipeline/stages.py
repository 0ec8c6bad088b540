"""The DAG, declared once: each stage's inputs, outputs, parameters and code.

Snakemake builds its rules from `STAGES` (workflow/rules/stages.smk) and `dvc.yaml` is generated
from it (`python -m pipeline dvc-yaml`), so the two engines cannot drift apart. An output path
depends only on its grid cell (task, system).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
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
    code: tuple[str, ...] = ()                  # sources whose edits must trigger a rerun
    metrics: tuple[str, ...] = ()               # roles among outs that are metrics files
    plots: tuple[str, ...] = ()                 # roles among outs that are plot data (dvc plots)
    directories: tuple[str, ...] = ()           # roles among outs that are folders
    persistent: tuple[str, ...] = field(default=())  # folders kept across reruns (resume state)

    def paths(self, role_paths: dict[str, str], **cell: str) -> dict[str, Path]:
        return {role: Path(template.format(**cell)) for role, template in role_paths.items()}

    def inputs(self, **cell: str) -> dict[str, Path]:
        return self.paths(self.deps, **cell)

    def outputs(self, **cell: str) -> dict[str, Path]:
        return self.paths(self.outs, **cell)


COMMON_CODE = ("pipeline/config.py", "pipeline/stages.py", "pipeline/__main__.py")

STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("download", ("task",), deps={}, outs={"raw": RAW},
          code=("pipeline/data/download.py", "pipeline/data/synthetic.py", "pipeline/data/jsonl.py"),
          directories=("raw",)),
    Stage("prepare", ("task",), deps={"raw": RAW}, outs={"data": PROCESSED},
          code=("pipeline/data",), directories=("data",)),
    Stage("train", ("task", "system"), deps={"data": PROCESSED}, outs={"model": f"{RUN}/model"},
          code=("pipeline/train.py", "pipeline/models", "pipeline/diffusion", "pipeline/checkpoint.py"),
          directories=("model",)),
    Stage("sample", ("task", "system"), deps={"data": PROCESSED, "model": f"{RUN}/model"},
          outs={"samples": f"{RUN}/samples"},
          code=("pipeline/generate.py", "pipeline/models", "pipeline/diffusion", "pipeline/text.py"),
          directories=("samples",)),
    Stage("evaluate", ("task", "system"), deps={"samples": f"{RUN}/samples", "data": PROCESSED},
          outs={"metrics": f"{RUN}/metrics.json"},
          code=("pipeline/evaluate.py", "pipeline/metrics.py", "pipeline/decoding", "pipeline/text.py"),
          metrics=("metrics",)),
    Stage("report", (), deps={},
          outs={"tables": "results/tables.md", "figures": "results/figures",
                "curves": "results/plots/bleu_vs_candidates.json"},
          code=("pipeline/report",), directories=("figures",), plots=("curves",)),
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


def code_files(stage: str, root: Path = Path(".")) -> list[str]:
    """The source files a stage depends on (folders expanded), so code edits trigger reruns."""
    files: list[str] = []
    for entry in (*COMMON_CODE, *STAGES[stage].code):
        path = root / entry
        if path.is_dir():
            files += sorted(str(p.relative_to(root)) for p in path.rglob("*.py"))
        elif path.exists():
            files.append(entry)
    return files


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

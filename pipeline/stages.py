"""The DAG, declared once: each stage's inputs, outputs, parameters and code.

Snakemake builds its rules from `STAGES` (workflow/rules/stages.smk) and `dvc.yaml` is generated
from it (`python -m pipeline dvc-yaml`), so the two engines cannot drift apart. An output path
depends only on its grid cell (task, system).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    Stage("report", (), deps={}, outs={"tables": "results/tables.md", "figures": "results/figures"},
          code=("pipeline/report",), directories=("figures",)),
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
    return [str(p) for p in STAGES["report"].outputs().values()]


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
    """The parameter sections a job reads (DVC tracks these keys; Snakemake hashes them)."""
    keys = [f"tasks.{cell['task']}"] if "task" in cell else ["tasks"]
    if "system" in cell:
        keys.append(f"systems.{cell['system']}")
    if stage in ("sample", "evaluate"):
        keys.append("sampling")
    if stage in ("evaluate", "report"):
        keys.append("evaluation")
    if stage == "report":
        keys += ["systems", "sampling", "scale"]
    return keys


def _resolve(cfg: Config, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def params_digest(cfg: Config, stage: str, **cell: str) -> str:
    """Hash of the sections a job reads: Snakemake reruns the job when it changes."""
    from pipeline.config import section_hash

    return section_hash(*(_resolve(cfg, key) for key in param_keys(cfg, stage, **cell)))

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
          code=("pipeline/data/download.py", "pipeline/data/synthetic.py"), directories=("raw",)),
    Stage("prepare", ("task",), deps={"raw": RAW}, outs={"data": PROCESSED},
          code=("pipeline/data",), directories=("data",)),
    Stage("train", ("task", "system"), deps={"data": PROCESSED}, outs={"model": f"{RUN}/model"},
          code=("pipeline/train.py", "pipeline/models", "pipeline/diffusion", "pipeline/checkpoint.py"),
          directories=("model",)),
    Stage("sample", ("task", "system"), deps={"data": PROCESSED, "raw": RAW, "model": f"{RUN}/model"},
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


def cli_command(params_path: str, stage: str, **cell: str) -> str:
    """The shell command of one job; both engines run exactly this."""
    args = " ".join(f"--{k} {v}" for k, v in cell.items())
    return f"python -m pipeline {stage} --params {params_path} {args}".rstrip()

"""The DAG, declared once: each stage's inputs, outputs, parameters and code.

Snakemake builds its rules from `STAGES` (workflow/rules/stages.smk) and `dvc.yaml` is generated
from it (`python -m pipeline dvc-yaml`), so the two engines cannot drift apart. An output path
depends only on its grid cell (task, system) and, for the report, on the file's `report_dir`.

What a job depends on (both engines follow this rule):
- its input files (the outputs of the jobs before it);
- the parameter keys it reads (`param_keys`), by value: DVC tracks the keys written in the file,
  Snakemake a digest of the resolved values (so a default changed in pipeline/config.py reruns
  under Snakemake only: write the value in the parameter file to make both engines see it);
- its code (`code_files`): the source files of its stage module and, for train and sample, of
  the system's model family, with every project module they import, except the plumbing
  (`PLUMBING`: the CLI, the stage table, the generators of dvc.yaml and of the schema, the
  parameter loader, tracking, provenance and the family registry), which decides how jobs are
  run and recorded but not what they compute. Editing LevT reruns LevT's jobs and what follows
  them; adding a family, a stage or a CLI option reruns nothing that exists.
Never part of a job's identity: the parameter file's path (Snakemake passes it in the
PIPELINE_PARAMS environment variable), so the same parameters under another name plan nothing new.
"""

from __future__ import annotations

import ast
import functools
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


from pipeline.config import Config

RAW = "data/raw/{task}"
PROCESSED = "data/processed/{task}"
RUN = "results/{task}/{system}"
TRAIN_STATE = f"{RUN}/train_state"  # resume checkpoints: kept across reruns, never a declared output
PARAMS_ENV = "PIPELINE_PARAMS"      # the parameter file of a Snakemake run, for its jobs


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline; the only place its files are named."""

    name: str                                   # = CLI subcommand = Snakemake rule = DVC stage
    wildcards: tuple[str, ...]
    deps: dict[str, str]                        # role -> path template
    outs: dict[str, str]                        # role -> path template
    code: tuple[str, ...] = ()                  # entry modules; their pipeline imports count too
    metrics: tuple[str, ...] = ()               # roles among outs that are metrics files
    plots: dict[str, tuple[str, str]] = field(default_factory=dict)  # plot data role -> (x, y)
    directories: tuple[str, ...] = ()           # roles among outs that are folders
    params: tuple[str, ...] = ()                # the parameter keys it reads (cell templates)
    uses_family: bool = False                   # runs the system's model family (its code counts)

    def paths(self, role_paths: dict[str, str], report_dir: str = "results",
              **cell: str) -> dict[str, Path]:
        return {role: Path(template.format(report_dir=report_dir, **cell))
                for role, template in role_paths.items()}

    def inputs(self, **cell: str) -> dict[str, Path]:
        return self.paths(self.deps, **cell)

    def outputs(self, report_dir: str = "results", **cell: str) -> dict[str, Path]:
        return self.paths(self.outs, report_dir, **cell)


# Modules that decide how jobs run and are recorded, not what they compute (see the docstring).
PLUMBING = frozenset({"pipeline.__main__", "pipeline.stages", "pipeline.dvcgen", "pipeline.schema",
                      "pipeline.config", "pipeline.tracking", "pipeline.cell_summary",
                      "pipeline.provenance", "pipeline.lookup", "pipeline.models.registry",
                      "pipeline.probe"})

# The parameter keys a job reads, and no others: training does not read `decode`, so changing how
# a system samples never retrains it; nothing but the report reads a label. Runtime settings
# (`compute`) are not part of any job's identity.
SYSTEM_RUN = ("systems.{system}.family", "systems.{system}.model")

STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("download", ("task",), deps={}, outs={"raw": RAW},
          code=("pipeline.data.download",), directories=("raw",), params=("tasks.{task}.source",)),
    Stage("prepare", ("task",), deps={"raw": RAW}, outs={"data": PROCESSED},
          code=("pipeline.data.prepare",), directories=("data",),
          params=("tasks.{task}.tokenizer", "tasks.{task}.seq_len", "tasks.{task}.on_bad_line")),
    Stage("train", ("task", "system"), deps={"data": PROCESSED}, outs={"model": f"{RUN}/model"},
          code=("pipeline.train",), directories=("model",),
          params=(*SYSTEM_RUN, "systems.{system}.train"), uses_family=True),
    Stage("sample", ("task", "system"), deps={"data": PROCESSED, "model": f"{RUN}/model"},
          outs={"samples": f"{RUN}/samples"}, code=("pipeline.generate",),
          directories=("samples",), params=(*SYSTEM_RUN, "systems.{system}.decode", "sampling"),
          uses_family=True),
    Stage("sweep", ("task", "system"), deps={"data": PROCESSED, "model": f"{RUN}/model"},
          outs={"sweep": f"{RUN}/sampler_sweep.json"}, code=("pipeline.diffusion.sweep",),
          plots={"sweep": ("steps", "bleu_single")},
          params=(*SYSTEM_RUN, "systems.{system}.decode", "sweep", "sampling.seeds"),
          uses_family=True),
    Stage("evaluate", ("task", "system"), deps={"samples": f"{RUN}/samples", "data": PROCESSED},
          outs={"metrics": f"{RUN}/metrics.json"}, code=("pipeline.evaluate",),
          metrics=("metrics",),
          params=("systems.{system}.family", "systems.{system}.label",
                  "systems.{system}.paper_system", "sampling.seeds", "evaluation")),
    Stage("report", (), deps={},
          outs={"tables": "{report_dir}/tables.md", "figures": "{report_dir}/figures",
                "curves": "{report_dir}/plots/bleu_vs_candidates.json"},
          code=("pipeline.report.tables",), directories=("figures",),
          plots={"curves": ("size", "bleu")},
          params=("scale", "tasks", "systems", "sampling.seeds", "evaluation", "report_dir")),
]}


STAGE_HELP = {
    "download": "fetch or generate a task's raw train/valid/test.jsonl",
    "prepare": "validate the raw splits, build the tokenizer, tokenize into memory-mapped arrays",
    "train": "train one system on one task (resumes from its last checkpoint)",
    "sample": "generate the candidate sets (one file per seed) for the test set",
    "evaluate": "metrics, MBR and diversity of one system's samples -> metrics.json",
    "sweep": "BLEU and wall time of a diffusion system per sampler and number of steps",
    "report": "results/tables.md and results/figures/ from all metrics files",
}


def is_trainable(cfg: Config, system: str) -> bool:
    from pipeline.models.registry import get_family

    return get_family(cfg.systems[system].family).trains


def stage_inputs(cfg: Config, stage: str, **cell: str) -> dict[str, Path]:
    """The inputs of one job: a download's local data files, a system without a model samples
    without the train stage, the report reads every metrics file."""
    deps = STAGES[stage].inputs(**cell)
    if stage == "download":
        from pipeline.data.download import local_source_files

        files = local_source_files(cfg.tasks[cell["task"]].source)
        deps.update({f"source:{path.name}": path for path in files})
    if stage == "sample" and not is_trainable(cfg, cell["system"]):
        deps.pop("model")
    if stage == "report":
        deps = {f"metrics:{t}/{s}": STAGES["evaluate"].outputs(task=t, system=s)["metrics"]
                for t, s in cfg.system_cells()}
        deps.update({f"sweep:{c['task']}/{c['system']}": STAGES["sweep"].outputs(**c)["sweep"]
                     for c in cells(cfg, "sweep")})
    return deps


def stage_outputs(cfg: Config, stage: str, **cell: str) -> dict[str, Path]:
    """The outputs of one job."""
    return STAGES[stage].outputs(cfg.report_dir, **cell)


def cells(cfg: Config, stage: str) -> list[dict[str, str]]:
    """Every grid cell a stage runs for under this parameter file."""
    wildcards = STAGES[stage].wildcards
    if wildcards == ("task",):
        return [{"task": t} for t in cfg.tasks]
    if stage == "sweep":
        swept = cfg.sweep.systems if cfg.sweep else []
        return [{"task": t, "system": s} for t, s in cfg.system_cells() if s in swept]
    if wildcards == ("task", "system"):
        return [{"task": t, "system": s} for t, s in cfg.system_cells()
                if stage != "train" or is_trainable(cfg, s)]
    return [{}]


def final_targets(cfg: Config) -> list[str]:
    """What `snakemake` with no target and `dvc repro` build: the tables and the figures."""
    outs = stage_outputs(cfg, "report")
    return [str(outs["tables"]), str(outs["figures"])]


def launcher(cfg: Config, stage: str, **cell: str) -> list[str]:
    """`python -m` for one process; `torchrun` when a system trains data-parallel."""
    if stage == "train" and (train := cfg.systems[cell["system"]].train) and train.num_processes > 1:
        return ["torchrun", "--standalone", "--nproc_per_node", str(train.num_processes), "-m",
                "pipeline"]
    return ["python", "-m", "pipeline"]


def cli_command(cfg: Config, stage: str, *, params_path: str | None = None, **cell: str) -> str:
    """The shell command of one job, every argument quoted; both engines run exactly this.

    Args:
        params_path: named on the command line (DVC, whose dvc.yaml is generated for one file);
            None leaves it to the PIPELINE_PARAMS environment variable (Snakemake), so that the
            command does not change with the file's name.
    """
    args = [*launcher(cfg, stage, **cell), stage]
    if params_path is not None:
        args += ["--params", params_path]
    for key, value in cell.items():
        args += [f"--{key}", value]
    return shlex.join(args)


def record_command(stage: str, **cell: str) -> str:
    """The command that records a finished job in DVC (`pipeline.dvcgen.record_job`)."""
    args = ["python", "-m", "pipeline", "dvc-record", stage]
    for key, value in cell.items():
        args += [f"--{key}", value]
    return shlex.join(args)


def code_files(cfg: Config, stage: str, root: Path = Path("."), **cell: str) -> list[str]:
    """The source files that compute a job's outputs (the rule in the module docstring)."""
    modules = list(STAGES[stage].code)
    if STAGES[stage].uses_family:
        modules.append(f"pipeline.models.{cfg.systems[cell['system']].family}")
    return sorted(str(p) for p in _import_closure(tuple(modules), Path(root)))


@functools.lru_cache(maxsize=64)
def _import_closure(modules: tuple[str, ...], root: Path) -> set[Path]:
    """The files of `modules` and of every non-plumbing `pipeline` module they import (static,
    any depth; imports under `if TYPE_CHECKING:` are not followed; a package `__init__.py` that
    holds only its docstring is not code)."""
    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        path = None if module in PLUMBING else _module_file(module, root)
        if path is None or path in seen:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.name != "__init__.py" or not _is_docstring_only(tree):  # a package's description
            seen.add(path)
        todo += _imports(tree)
    return seen


def _is_docstring_only(tree: ast.Module) -> bool:
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
               for node in tree.body)


def _imports(tree: ast.Module) -> list[str]:
    """Every module an AST imports, with `from a import b` giving both a and a.b."""
    found, skip = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for inner in node.body for child in ast.walk(inner))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def _module_file(module: str, root: Path) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py (or its package's __init__.py); None outside pipeline."""
    if module.split(".")[0] != "pipeline":
        return None
    base = root / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def stage_keys(stage: str, **cell: str) -> list[str]:
    """The dotted parameter keys one job reads (its stage's `params`, for its cell)."""
    return [template.format(**cell) for template in STAGES[stage].params]


def param_keys(cfg: Config, stage: str, **cell: str) -> dict[str, list[str]]:
    """`stage_keys` by the parameter file that holds each (what DVC's `params:` can track): the
    file itself, or the file it `extends` for a key it does not change."""
    from pipeline.config import read_layers

    layers = read_layers(cfg.path)
    found: dict[str, list[str]] = {}
    for key in stage_keys(stage, **cell):
        owner = next((path for path, raw in reversed(layers) if _holds(raw, key)), None)
        if owner is not None:
            found.setdefault(os.path.relpath(owner), []).append(key)
    return found


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
    """Hash of the resolved values (defaults included) a job reads: Snakemake reruns the job
    when it changes."""
    from pipeline.config import section_hash

    return section_hash(*(_resolve(cfg, key) for key in stage_keys(stage, **cell)))

"""One DAG, two engines: Snakemake and DVC plan exactly the same commands."""

import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config
from pipeline.dvcgen import build_dvc_yaml, default_location, write_dvc_yaml
from tests.helpers.project import dvc, project_copy, snakemake

REPO = Path(__file__).resolve().parents[1]


def _snakemake_commands(work: Path, params: str) -> set[str]:
    out = snakemake(work, params, "-n", "-p")
    assert out.returncode == 0, out.stderr[-3000:]
    commands = (re.sub(r"^Shell command: ", "", line.strip()) for line in out.stdout.splitlines())
    return {re.sub(r"\s+>\s+logs/.*$", "", cmd) for cmd in commands
            if re.match(r"(python -m pipeline|torchrun) ", cmd)}


def _dvc_commands(work: Path) -> set[str]:
    """The commands of the stages `dvc status` says must run (`dvc repro --dry` cannot plan past a
    stage whose inputs do not exist yet), as DVC itself reads them from dvc.yaml, without the
    `--params FILE` that Snakemake passes through the environment instead."""
    from dvc.repo import Repo

    out = dvc(work, "status", "--json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    pending = {name.split(":")[-1] for name in json.loads(out.stdout)}
    with Repo(str(work)) as repo:
        return {re.sub(r" --params \S+", "", stage.cmd) for stage in repo.index.stages
                if stage.name in pending}


@pytest.mark.slow        # Snakemake and DVC processes
@pytest.mark.parametrize("params", ["params/default.yaml", "params/paper.yaml"])
def test_snakemake_and_dvc_plan_the_same_jobs(tmp_path, params):
    work = project_copy(tmp_path / "project", params)
    snake, dvc = _snakemake_commands(work, params), _dvc_commands(work)
    cfg = load_config(work / params)
    assert len(snake) == len(build_dvc_yaml(cfg)["stages"])
    assert snake == dvc


@pytest.mark.parametrize("params", ["params/default.yaml", "params/paper.yaml"])
def test_committed_dvc_yaml_is_fresh(monkeypatch, params):
    monkeypatch.chdir(REPO)
    location = default_location(Path(params))
    committed = yaml.safe_load(location.read_text())
    assert committed == build_dvc_yaml(load_config(params), location), \
        f"{location} is stale: run `python -m pipeline dvc-yaml --params {params}`"


def test_a_file_that_extends_another_gets_no_dvc_yaml(monkeypatch, tmp_path):
    """Its jobs write the extended file's outputs: a second dvc.yaml would break DVC's graph."""
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match="extends params/default.yaml"):
        write_dvc_yaml(load_config("params/sweep.yaml"), tmp_path / "dvc.yaml")
    assert not (tmp_path / "dvc.yaml").exists()


@pytest.mark.slow
def test_snakemake_lint_is_clean():
    out = snakemake(REPO, "params/default.yaml", "--lint")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Congratulations" in out.stdout + out.stderr


@pytest.mark.slow
def test_slurm_profile_plans_gpu_jobs_with_torchrun(tmp_path):
    """A dry run through the SLURM executor plugin with the paper's parameters."""
    work = project_copy(tmp_path / "project", "params/paper.yaml")
    out = snakemake(work, "params/paper.yaml", "results/paper/tables.md", "-n",
                    "--profile", "workflow/profiles/slurm")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "torchrun --standalone --nproc_per_node 4 -m pipeline train" in text
    train_jobs = re.findall(r"rule train:.*?resources: ([^\n]*)", text, flags=re.S)
    assert train_jobs and all("gpu=" in r and "gpu=0" not in r for r in train_jobs)
    assert "slurm_partition=gpu" in text

"""One DAG, two engines: Snakemake and DVC plan exactly the same commands."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.dvcgen import build_dvc_yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _project_copy(tmp_path: Path, params: str) -> Path:
    """A fresh git+DVC checkout of the workflow files, with dvc.yaml generated for `params`."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Snakefile", "workflow", "params", "pipeline"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run([BIN / "dvc", "init", "-q"], cwd=work, check=True, env=env)
    subprocess.run([sys.executable, "-m", "pipeline", "dvc-yaml", "--params", params],
                   cwd=work, check=True, capture_output=True)
    return work


def _snakemake_commands(work: Path, params: str) -> set[str]:
    out = subprocess.run([BIN / "snakemake", "-n", "-p", "--cores", "1", "--config",
                          f"params={params}"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return {re.sub(r"\s+>\s+logs/\S+ 2>&1$", "", line.strip())
            for line in out.stdout.splitlines()
            if re.match(r"\s*(python -m pipeline|torchrun) ", line)}


def _dvc_commands(work: Path) -> set[str]:
    out = subprocess.run([BIN / "dvc", "repro", "--dry"], cwd=work, capture_output=True, text=True,
                         env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {line[2:].strip() for line in out.stdout.splitlines() if line.startswith("> ")}


@pytest.mark.parametrize("params", ["params/default.yaml", "params/paper.yaml"])
def test_snakemake_and_dvc_plan_the_same_jobs(tmp_path, params):
    work = _project_copy(tmp_path, params)
    snake, dvc = _snakemake_commands(work, params), _dvc_commands(work)
    cfg = load_config(work / params)
    assert len(snake) == len(build_dvc_yaml(cfg)["stages"])
    assert snake == dvc


def test_committed_dvc_yaml_is_fresh(monkeypatch):
    monkeypatch.chdir(REPO)
    committed = yaml.safe_load(Path("dvc.yaml").read_text())
    assert committed == build_dvc_yaml(load_config("params/default.yaml")), \
        "dvc.yaml is stale: run `python -m pipeline dvc-yaml`"

"""A fresh copy of the project's workflow in a temp folder, and the engines run inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "workflow", "params", "pipeline")


def engine_env(**extra: str) -> dict[str, str]:
    """The environment the engines' jobs see: the project's venv first on PATH, nothing online."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


def project_copy(dest: Path, params: str) -> Path:
    """Copy the workflow files to `dest`, init git and DVC, generate dvc.yaml for `params`."""
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    env = engine_env()
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([BIN / "dvc", "init", "-q"], cwd=dest, check=True, env=env)
    for name in (".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, dest / name)
    subprocess.run([sys.executable, "-m", "pipeline", "dvc-yaml", "--params", params],
                   cwd=dest, check=True, capture_output=True, env=env)
    return dest


def copy_of_run(work: Path, dest: Path) -> Path:
    """A copy of a project that has run (outputs, Snakemake's records, git and DVC state), with
    every file's times kept, for a test that changes it."""
    shutil.copytree(work, dest, symlinks=True)
    return dest


TINY = "params/tiny.yaml"


def run_tiny_dag(dest: Path) -> Path:
    """A fresh copy of the project after `snakemake results/tables.md` on the tiny parameters."""
    work = project_copy(dest, TINY)
    out = snakemake(work, TINY, "results/tables.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return work


def snakemake(work: Path, params: str, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "snakemake", *args, "--cores", "2", "--config", f"params={params}"],
                          cwd=work, capture_output=True, text=True, env=engine_env(), timeout=timeout)


def dvc(work: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "dvc", *args], cwd=work, capture_output=True, text=True,
                          env=engine_env(), timeout=timeout)

"""A Snakemake run is versioned by DVC: pushed to a remote, pulled into a fresh clone byte for
byte, and an older commit's tables and checkpoints come back with `dvc checkout` (the README's
DVC section, with a local folder as the remote)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.plans import dvc_changed, snakemake_plan
from tests.helpers.project import TINY, copy_of_run, dvc, engine_env, snakemake

pytestmark = pytest.mark.slow
OUTPUTS = ("data/raw", "data/processed", "results")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _run(work: Path, *args: str) -> str:
    out = subprocess.run(args, cwd=work, capture_output=True, text=True, env=engine_env(**GIT_ENV))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def _dvc(work: Path, *args: str) -> None:
    out = dvc(work, *args)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def _contents(root: Path) -> dict[str, bytes]:
    """Every output file under data/ and results/ (not Snakemake's marks, not resume states)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for top in OUTPUTS for p in sorted((root / top).rglob("*"))
            if p.is_file() and p.name != ".snakemake_timestamp" and "train_state" not in p.parts}


@pytest.fixture
def work(tiny_run, tmp_path):
    work = copy_of_run(tiny_run, tmp_path / "project")
    _run(work, "git", "add", "-A")
    _run(work, "git", "commit", "-qm", "tiny run")
    return work


def test_push_then_pull_into_a_fresh_clone_restores_every_output(work, tmp_path):
    assert dvc_changed(work) == set()
    _dvc(work, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    _run(work, "git", "commit", "-qam", "remote")
    _dvc(work, "push")
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(work), str(clone))
    _dvc(clone, "pull")
    expected = _contents(work)
    assert any("model.safetensors" in name for name in expected)
    assert _contents(clone) == expected
    assert not list(clone.glob("results/*/*/train_state"))       # resume states stay local
    assert dvc_changed(clone) == set()
    assert snakemake(clone, TINY, "--touch").returncode == 0       # pulled files get fresh times
    assert snakemake_plan(clone, TINY) == set()


def test_checkout_of_an_older_commit_restores_its_tables_and_checkpoints(work):
    model = "results/tinypara/gru_attention/model/model.safetensors"
    before = {name: (work / name).read_bytes() for name in ("results/tables.md", model)}
    params = yaml.safe_load((work / TINY).read_text())
    gru = params["systems"]["gru_attention"]
    gru.update(label="GRU (more steps)", train={**gru["train"], "steps": gru["train"]["steps"] + 2})
    (work / TINY).write_text(yaml.safe_dump(params, sort_keys=False))
    out = snakemake(work, TINY, "results/tables.md")
    assert out.returncode == 0, out.stderr[-3000:]
    assert all((work / name).read_bytes() != data for name, data in before.items())
    _run(work, "git", "add", "-A")
    _run(work, "git", "commit", "-qm", "more steps")

    _run(work, "git", "checkout", "-q", "HEAD~1")
    _dvc(work, "checkout")
    assert {name: (work / name).read_bytes() for name in before} == before

"""Faults: a pipeline killed mid-training resumes from its checkpoint and redoes nothing finished;
a failing stage leaves no output a rerun could mistake for finished; the lock guards concurrency."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.helpers.project import BIN, engine_env, project_copy, snakemake

pytestmark = pytest.mark.slow
PARAMS = "params/resume.yaml"
MODEL = "results/tinypara/diffuseq/model"
PAUSE_HOOK = Path(__file__).resolve().parent / "helpers" / "pause_after_state"
PAUSE_STEP = 15


def _resume_project(dest: Path) -> Path:
    """The tiny configuration with only DiffuSeq, a state saved every 5 of its 60 steps."""
    work = project_copy(dest, "params/tiny.yaml")
    params = yaml.safe_load((work / "params/tiny.yaml").read_text())
    params["tasks"]["tinypara"]["systems"] = ["diffuseq"]
    params["systems"] = {"diffuseq": params["systems"]["diffuseq"]}
    params["systems"]["diffuseq"]["train"].update(steps=60, checkpoint_every=5, eval_every=30)
    (work / PARAMS).write_text(yaml.safe_dump(params))
    return work


def _start_paused(work: Path, cores: int) -> subprocess.Popen:
    """Start the pipeline with the training paused for good after saving step PAUSE_STEP
    (tests/helpers/pause_after_state) and return once it is there: it cannot finish first."""
    marker = work / "paused.txt"
    python_path = os.pathsep.join(filter(None, [str(PAUSE_HOOK), os.environ.get("PYTHONPATH")]))
    env = engine_env(PYTHONPATH=python_path, PAUSE_AFTER_STEP=str(PAUSE_STEP), PAUSE_MARKER=str(marker))
    proc = subprocess.Popen([BIN / "snakemake", MODEL, "--cores", str(cores), "--config", f"params={PARAMS}"],
                            cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 1800          # only a broken pipeline gets here: no race
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            pytest.fail(f"the pipeline ended (code {proc.returncode}) or hung before step {PAUSE_STEP}")
        time.sleep(0.5)
    return proc


def test_killed_pipeline_resumes_training_and_matches_an_uninterrupted_run(tmp_path):
    reference = _resume_project(tmp_path / "reference")
    assert snakemake(reference, PARAMS, MODEL).returncode == 0

    work = _resume_project(tmp_path / "killed")
    proc = _start_paused(work, cores=2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C to the whole pipeline
    proc.wait(timeout=600)
    assert not (work / MODEL).exists()
    states = sorted((work / "results/tinypara/diffuseq/train_state").glob("step-*"))
    assert states[-1].name == f"step-{PAUSE_STEP:08d}"
    raw_mtime = (work / "data/processed/tinypara/stats.json").stat().st_mtime

    rerun = snakemake(work, PARAMS, MODEL)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (work / "logs/train/tinypara_diffuseq.log").read_text()
    resumed = re.search(r"resumed from .*step-0*(\d+) \(step (\d+)\)", log)
    assert resumed and int(resumed.group(2)) == PAUSE_STEP, log[-2000:]
    assert "rule prepare" not in rerun.stdout + rerun.stderr
    assert (work / "data/processed/tinypara/stats.json").stat().st_mtime == raw_mtime
    weights = load_file(work / MODEL / "model.safetensors")
    expected = load_file(reference / MODEL / "model.safetensors")
    assert weights.keys() == expected.keys()
    assert all((weights[k] == expected[k]).all() for k in expected)


def test_a_failing_stage_leaves_no_output_and_a_rerun_redoes_it(tmp_path):
    work = _resume_project(tmp_path / "project")
    params = yaml.safe_load((work / PARAMS).read_text())
    params["tasks"]["tinypara"]["source"] = {"kind": "local", "uri": str(tmp_path / "missing")}
    (work / PARAMS).write_text(yaml.safe_dump(params))
    out = snakemake(work, PARAMS, "data/processed/tinypara")
    assert out.returncode != 0
    assert not (work / "data/raw/tinypara").exists()
    assert not (work / "data/raw").exists() or not list((work / "data/raw").glob(".tinypara*"))
    log = (work / "logs/download/tinypara.log").read_text()
    assert str(tmp_path / "missing") in log


def test_a_second_concurrent_invocation_is_refused_by_the_lock(tmp_path):
    work = _resume_project(tmp_path / "project")
    first = _start_paused(work, cores=1)       # holds the lock until it is interrupted
    try:
        second = snakemake(work, PARAMS, MODEL)
        assert second.returncode != 0
        assert "LockException" in second.stderr or "cannot be locked" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=600)

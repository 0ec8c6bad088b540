"""MLflow tracking: one experiment per task, a parent run per (task, system) carrying the cell's
table row, a child per stage; and tracking as a side channel (bounded, locked, ended on kill)."""

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow.environment_variables import (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
                                          MLFLOW_HTTP_REQUEST_TIMEOUT)
from mlflow.tracking import MlflowClient

from pipeline.config import load_config
from pipeline.evaluate import evaluate_system
from pipeline.cell_summary import NUM_SAMPLE_CANDIDATES, SAMPLES_TABLE
from pipeline.tracking import HTTP_DEFAULTS, flatten, stage_run
from tests.unit.test_evaluate import make_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "samples"
# A stage job that stays inside its run until it is signalled.
WAITING_JOB = """
import signal, sys, time
from pipeline.config import load_config
from pipeline.tracking import stage_run
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even from a script
cfg = load_config(sys.argv[1])
task, system = cfg.system_cells()[0]
with stage_run(cfg, "train", task, system) as tracker:
    tracker.log(step=1, loss=1.0)
    tracker.flush()
    print("running", flush=True)
    time.sleep(600)
"""


@pytest.fixture()
def cfg(repo_root):
    return load_config(repo_root / "params/tiny.yaml")


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow store, created once (a new store's schema migration takes seconds)."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def store(tmp_path, monkeypatch, migrated_store) -> str:
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _runs(uri: str, experiment: str, query: str = "") -> list:
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id], query)


def test_stage_runs_nest_under_one_parent_per_cell_whose_span_covers_them(store, cfg):
    task, system = cfg.system_cells()[0]
    for stage in ("train", "sample"):
        with stage_run(cfg, stage, task, system, tags={"code_version": "abc"}) as tracker:
            assert tracker.active
            tracker.log_params(flatten(dataclasses.asdict(cfg.sampling), "sampling"))
            for step in range(3):
                tracker.log(step=step, loss=1.0 / (step + 1))
    runs = _runs(store, task)
    parents = [r for r in runs if r.data.tags["pipeline.role"] == "cell"]
    children = [r for r in runs if r.data.tags["pipeline.role"] == "stage"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0].info
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.run_id}
    assert parent.status == "FINISHED"
    assert parent.start_time <= min(r.info.start_time for r in children)
    assert parent.end_time >= max(r.info.end_time for r in children)
    train = next(r for r in children if r.data.tags["stage"] == "train")
    assert train.info.status == "FINISHED" and train.data.tags["code_version"] == "abc"
    history = MlflowClient(store).get_metric_history(train.info.run_id, "loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [1.0, 0.5, 1.0 / 3]
    assert train.data.params["sampling.seeds"] == str(cfg.sampling.seeds)


def test_a_failing_stage_marks_its_run_failed(store, cfg):
    task, system = cfg.system_cells()[0]
    with pytest.raises(RuntimeError):
        with stage_run(cfg, "train", task, system):
            raise RuntimeError("boom")
    assert _runs(store, task, "tags.stage = 'train'")[0].info.status == "FAILED"


@pytest.fixture()
def refusing_server():
    """A TCP port that accepts connections and closes them unanswered; counts the connections."""
    sock = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", accepted
    sock.close()


def test_an_unreachable_server_costs_a_stage_one_request_and_one_warning(
        refusing_server, monkeypatch, caplog, cfg):
    url, accepted = refusing_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    for key in HTTP_DEFAULTS:  # the project's defaults, not a test setting
        monkeypatch.delenv(key, raising=False)
    task, system = cfg.system_cells()[0]
    with caplog.at_level(logging.WARNING, logger="pipeline.tracking"):
        with stage_run(cfg, "train", task, system) as tracker:
            for step in range(500):
                tracker.log(step=step, loss=1.0)
            tracker.log_params({"a": 1})
            tracker.log_training_summary()
    assert not tracker.active
    # One request with its retries, then nothing: at most (1 + retries) timeouts for a server that
    # never answers, as MLflow will apply them.
    attempts = 1 + MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    assert len(accepted) == attempts
    assert attempts * MLFLOW_HTTP_REQUEST_TIMEOUT.get() <= 10
    assert len([r for r in caplog.records if r.name == "pipeline.tracking"]) == 1


def _first_use(params: str, uri: str, cell: int, barrier) -> None:
    """One job of a cell opening its run against `uri` once every job is ready."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    cfg = load_config(params)
    task, system = cfg.system_cells()[cell]
    barrier.wait()
    with stage_run(cfg, "train", task, system) as tracker:
        tracker.log(step=1, loss=1.0)


@pytest.mark.slow  # starts three Python processes
def test_jobs_starting_at_once_on_a_new_sqlite_store_lose_no_run(tmp_path, repo_root, cfg):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    num_jobs = 3
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(num_jobs)
    jobs = [context.Process(target=_first_use,
                            args=(str(repo_root / "params/tiny.yaml"), uri, cell, barrier))
            for cell in range(num_jobs)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=300)
    assert [job.exitcode for job in jobs] == [0] * num_jobs
    runs = _runs(uri, cfg.system_cells()[0][0], "tags.stage = 'train'")
    assert sorted(r.data.tags["pipeline.cell"] for r in runs) == sorted(
        f"{task}/{system}" for task, system in cfg.system_cells()[:num_jobs])
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all(r.data.metrics["loss"] == 1.0 for r in runs)


def _start_waiting_job(tmp_path: Path, uri: str, repo_root: Path) -> subprocess.Popen:
    job = subprocess.Popen([sys.executable, "-c", WAITING_JOB, str(repo_root / "params/tiny.yaml")],
                           cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "MLFLOW_TRACKING_URI": uri,
                                "PYTHONPATH": str(repo_root)})
    assert job.stdout.readline().strip() == "running"
    return job


@pytest.mark.slow  # starts a Python process
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_job_ends_its_run_killed(tmp_path, store, repo_root, cfg, signum):
    job = _start_waiting_job(tmp_path, store, repo_root)
    job.send_signal(signum)
    assert job.wait(timeout=60) == (143 if signum == signal.SIGTERM else -signal.SIGINT)
    runs = _runs(store, cfg.system_cells()[0][0])
    assert {r.data.tags["pipeline.role"]: r.info.status for r in runs} == {"stage": "KILLED",
                                                                         "cell": "KILLED"}


@pytest.mark.slow  # starts a Python process
def test_a_run_left_running_by_a_sigkilled_job_is_ended_by_the_next_job_of_its_cell(
        tmp_path, store, repo_root, cfg):
    job = _start_waiting_job(tmp_path, store, repo_root)
    job.kill()
    job.wait(timeout=60)
    task, system = cfg.system_cells()[0]
    (stale,) = _runs(store, task, "tags.stage = 'train'")
    assert stale.info.status == "RUNNING"
    with stage_run(cfg, "sample", *cfg.system_cells()[1]):
        pass
    assert _runs(store, task, "tags.stage = 'train'")[0].info.status == "RUNNING"  # another cell
    with stage_run(cfg, "train", task, system):
        pass
    ended = MlflowClient(store).get_run(stale.info.run_id).info
    assert ended.status == "KILLED"
    assert ended.start_time <= ended.end_time
    assert _runs(store, task, "tags.stage = 'train' and attributes.status = 'FINISHED'")


@pytest.fixture()
def evaluated_cell(tmp_path, monkeypatch):
    """A (task, system) cell on disk as the stages leave it: prepared data (stats.json), sample
    files, and the metrics JSON of the real evaluate stage. Paths are relative to the cwd."""
    monkeypatch.chdir(tmp_path)
    cfg = make_config()
    samples = tmp_path / "results/para/diffuseq/samples"
    shutil.copytree(FIXTURES / "paraphrase_diffuseq", samples)
    data = tmp_path / "data/processed/para"
    data.mkdir(parents=True)
    checksum = hashlib.sha256(b"the raw splits").hexdigest()
    (data / "stats.json").write_text(json.dumps({"raw_sha256": checksum,
                                                 "splits": {"test": {"count": 4}}}))
    metrics = evaluate_system(cfg, "para", "diffuseq", samples, data,
                              tmp_path / "results/para/diffuseq/metrics.json")
    return cfg, metrics, checksum


def test_the_parent_run_carries_the_cells_table_row(store, evaluated_cell):
    cfg, metrics, checksum = evaluated_cell
    with stage_run(cfg, "train", "para", "diffuseq") as tracker:
        tracker.log(step=1, tokens_per_s=100.0)
        tracker.log(step=2, tokens_per_s=300.0)
        tracker.log_training_summary()
    for _ in range(2):  # a rerun of evaluate changes nothing
        with stage_run(cfg, "evaluate", "para", "diffuseq") as tracker:
            tracker.publish_cell(cfg, "para", "diffuseq", metrics)
            assert tracker.active
    client = MlflowClient(store)
    (parent,) = _runs(store, "para", "tags.`pipeline.role` = 'cell'")
    numbers = {k: v for k, v in metrics["table"].items() if isinstance(v, float)}
    assert {k: parent.data.metrics[k] for k in numbers} == numbers
    assert parent.data.metrics["mbr_size"] == max(metrics["mbr_sizes"]) == 5
    assert parent.data.metrics["diversity_k"] == metrics["diversity"]["k"]
    assert parent.data.metrics["train_tokens_per_s"] == 200.0
    assert parent.data.metrics["train_wall_s"] > 0
    assert parent.data.params["family"] == "diffuseq"
    assert parent.data.params["decode_method"] == metrics["decode_method"]
    assert parent.data.params["decode_steps"] == "2000"
    (dataset,) = parent.inputs.dataset_inputs
    assert dataset.dataset.name == "para" and dataset.dataset.digest == checksum[:36]
    assert json.loads(dataset.dataset.profile)["sha256"] == checksum
    assert [f.path for f in client.list_artifacts(parent.info.run_id)] == [SAMPLES_TABLE]
    # MLflow's own reader (it finds the runs in MLFLOW_TRACKING_URI's store, here `store`).
    table = client.load_table(parent.info.experiment_id, SAMPLES_TABLE, [parent.info.run_id])
    seed_files = {s: (FIXTURES / "paraphrase_diffuseq" / f"seed{s}.jsonl").read_text().splitlines()
                  for s in metrics["seeds"]}
    picks = metrics["mbr"]["5"]["picks"]
    assert len(picks) == metrics["num_sources"] == len(table)  # not doubled by the rerun
    assert list(table["chosen"]) == [json.loads(seed_files[metrics["seeds"][k]][i])["recover"]
                                     for i, k in enumerate(picks)]
    assert [c for c in table.columns if c.startswith("seed")] == [
        f"seed{s}" for s in metrics["seeds"][:NUM_SAMPLE_CANDIDATES]]

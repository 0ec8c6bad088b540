"""MLflow tracking: one experiment per task, a parent run per (task, system), a child per stage."""

import dataclasses

import pytest
from mlflow.tracking import MlflowClient

from pipeline.config import load_config
from pipeline.tracking import flatten, stage_run


@pytest.fixture()
def cfg(repo_root):
    return load_config(repo_root / "params/tiny.yaml")


def test_stage_runs_nest_under_one_parent_per_cell(tmp_path, monkeypatch, cfg):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    task, system = cfg.system_cells()[0]
    for stage in ("train", "sample"):
        with stage_run(cfg, stage, task, system, tags={"code_version": "abc"}) as tracker:
            assert tracker.active
            tracker.log_params(flatten(dataclasses.asdict(cfg.sampling), "sampling"))
            for step in range(3):
                tracker.log(step=step, loss=1.0 / (step + 1))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(task)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("pipeline.cell") == f"{task}/{system}"]
    children = [r for r in runs if "stage" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    train = next(r for r in children if r.data.tags["stage"] == "train")
    assert train.info.status == "FINISHED" and train.data.tags["code_version"] == "abc"
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [1.0, 0.5, 1.0 / 3]
    assert train.data.params["sampling.seeds"] == str(cfg.sampling.seeds)


def test_a_failing_stage_marks_its_run_failed(tmp_path, monkeypatch, cfg):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    task, system = cfg.system_cells()[0]
    with pytest.raises(RuntimeError):
        with stage_run(cfg, "train", task, system):
            raise RuntimeError("boom")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(task).experiment_id],
                              filter_string="tags.stage = 'train'")
    assert runs[0].info.status == "FAILED"


def test_unreachable_tracking_server_does_not_fail_the_stage(monkeypatch, cfg):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with stage_run(cfg, "report") as tracker:
        tracker.log(step=0, x=1.0)
    assert not tracker.active

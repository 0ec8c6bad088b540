"""MLflow run tracking behind one context manager.

The files under results/ are the source of truth; MLflow is a side channel for comparing runs in
`mlflow ui`. Layout: one experiment per task, one parent run per (task, system), and one child run
per stage (train, sample, evaluate). Default store: `sqlite:///mlflow.db` in the working directory
(no server); `MLFLOW_TRACKING_URI` points it elsewhere. Logging failures (a locked database, an
unreachable server) are reported as warnings and never fail a stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.config import Config

LOG = logging.getLogger(__name__)
FLUSH_EVERY = 200  # metric values buffered before one batched write (SQLite writes are slow)


class Tracker:
    """Logs numbers, parameters and files of one stage run; `log` is the trainer's callback."""

    def __init__(self, client: Any = None, run_id: str | None = None) -> None:
        self.client, self.run_id = client, run_id
        self._buffer: list[Any] = []

    @property
    def active(self) -> bool:
        return self.client is not None

    def __call__(self, step: int | None = None, **metrics: float) -> None:
        self.log(step, **metrics)

    def log(self, step: int | None = None, **metrics: float) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        self._buffer += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.active and self._buffer:
            self._guard(self.client.log_batch, self.run_id, metrics=self._buffer)
        self._buffer = []

    def log_params(self, params: dict[str, Any]) -> None:
        if self.active:
            from mlflow.entities import Param

            items = [Param(k[:250], str(v)[:6000]) for k, v in params.items()]
            for start in range(0, len(items), 100):
                self._guard(self.client.log_batch, self.run_id, params=items[start:start + 100])

    def set_tags(self, **tags: Any) -> None:
        for key, value in tags.items():
            if self.active and value is not None:
                self._guard(self.client.set_tag, self.run_id, key, str(value))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).exists():
            log_fn = self.client.log_artifacts if Path(path).is_dir() else self.client.log_artifact
            self._guard(log_fn, self.run_id, str(path), artifact_path)

    @staticmethod
    def _guard(fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a stage
            LOG.warning("MLflow logging failed (%s: %s); results/ files are unaffected",
                        type(exc).__name__, exc)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay as values."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _parent_run(client: Any, experiment_id: str, cfg: Config, task: str, system: str) -> str:
    """The (task, system) parent run of this parameter file, created on first use."""
    cell = f"{task}/{system}"
    query = f"tags.`pipeline.cell` = '{cell}' and tags.`pipeline.params` = '{cfg.path}'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=cell,
                            tags={"pipeline.cell": cell, "pipeline.params": cfg.path,
                                  "task": task, "system": system,
                                  "family": cfg.systems[system].family})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str, task: str | None = None, system: str | None = None,
              tags: dict[str, Any] | None = None) -> Iterator[Tracker]:
    """Open the MLflow run of one stage job; yields a Tracker (inactive if MLflow is unusable)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tracker = Tracker()
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri())
        name = task or "report"
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            name, tags={"mlflow.experimentKind": "custom_model_development"})
        run_tags = {"stage": stage, "pipeline.params": cfg.path, **(tags or {})}
        if task and system:
            run_tags["mlflow.parentRunId"] = _parent_run(client, experiment_id, cfg, task, system)
        run_name = "/".join(x for x in (task, system, stage) if x)
        run = client.create_run(experiment_id, run_name=run_name,
                                tags={k: str(v) for k, v in run_tags.items() if v is not None})
        tracker = Tracker(client, run.info.run_id)
    except Exception as exc:  # noqa: BLE001
        LOG.warning("MLflow tracking unavailable (%s: %s); continuing without it",
                    type(exc).__name__, exc)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    finally:
        tracker.flush()
        if tracker.active:
            tracker._guard(tracker.client.set_terminated, tracker.run_id, status)

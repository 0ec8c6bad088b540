"""MLflow run tracking behind one context manager (what a cell's parent run carries:
`pipeline.cell_summary`).

The files under results/ are the source of truth; MLflow is a side channel for comparing runs in
`mlflow ui`. Layout: one experiment per task; one parent run per (task, system) and configuration
(its parameter hash and data checksum), whose row carries what the cell's table row carries (the
table's metrics, key parameters, training speed, the data as dataset input, a samples table); and
one child run per stage job (train, sample, evaluate) with the per-stage detail and curves.

Default store: `sqlite:///mlflow.db` in the working directory (no server); `MLFLOW_TRACKING_URI`
points it elsewhere. A side channel never hurts a stage:
- an HTTP server gets one retry and a 5 s timeout (unless `MLFLOW_HTTP_REQUEST_*` say otherwise),
  and the first failed call ends the job's logging with one warning;
- a SQLite store is created, migrated and given new runs under a file lock (`<db>.lock`), so jobs
  starting at once against a new store lose nothing;
- a job interrupted by SIGINT or SIGTERM ends its run KILLED, an exception ends it FAILED, and a run
  left RUNNING by a SIGKILLed job is ended KILLED by the next job of its cell (jobs of one cell run
  one after another).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline import provenance, stages
from pipeline.cell_summary import (SAMPLES_TABLE, TABLE_VIEW, cell_metrics, cell_params,
                                   dataset_input, samples_table, table_numbers, table_view)
from pipeline.config import Config

LOG = logging.getLogger(__name__)
FLUSH_EVERY = 200  # metric values buffered before one batched write (SQLite writes are slow)
# Bounded cost of an unreachable server: MLflow's defaults (7 retries, 120 s) add ~4 min per call.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
LOCK_TIMEOUT_S = 120  # a new store's migration takes seconds; many jobs may queue behind it
TRAIN_SPEED = ("train_wall_s", "train_tokens_per_s")


class Terminated(SystemExit):
    """SIGTERM turned into an exception, so that a killed job's run is ended (exit status 143)."""


class Tracker:
    """Logs numbers, parameters and files of one stage run; `log` is the trainer's callback.

    Inactive (every call a no-op) when MLflow is unusable; the first failed call makes it inactive.
    """

    def __init__(self, client: Any = None, run_id: str | None = None, parent_id: str | None = None,
                 experiment_id: str | None = None, uri: str = "") -> None:
        self.client, self.run_id, self.parent_id = client, run_id, parent_id
        self.experiment_id, self.uri = experiment_id, uri
        self._buffer: list[Any] = []
        self._failed = self._warned = False
        self._started = time.monotonic()
        self._tokens_per_s: list[float] = []

    @property
    def active(self) -> bool:
        return self.client is not None and not self._failed

    def __call__(self, step: int | None = None, **metrics: float) -> None:
        self.log(step, **metrics)

    def log(self, step: int | None = None, **metrics: float) -> None:
        if not self.active:
            return
        if "tokens_per_s" in metrics:
            self._tokens_per_s.append(float(metrics["tokens_per_s"]))
        self._buffer += _metric_entities(metrics, step or 0)
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.active and self._buffer:
            self._guard(self.client.log_batch, self.run_id, metrics=self._buffer)
        self._buffer = []

    def log_params(self, params: dict[str, Any]) -> None:
        self._log_params(self.run_id, params)

    def set_tags(self, **tags: Any) -> None:
        for key, value in tags.items():
            if self.active and value is not None:
                self._guard(self.client.set_tag, self.run_id, key, str(value))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).exists():
            log_fn = self.client.log_artifacts if Path(path).is_dir() else self.client.log_artifact
            self._guard(log_fn, self.run_id, str(path), artifact_path)

    def log_training_summary(self) -> None:
        """`train_wall_s` (this job) and `train_tokens_per_s` (mean over its steps) on the run."""
        if self._tokens_per_s:
            self.log(train_tokens_per_s=sum(self._tokens_per_s) / len(self._tokens_per_s))
        self.log(train_wall_s=time.monotonic() - self._started)

    def publish_cell(self, cfg: Config, task: str, system: str, metrics: dict[str, Any]) -> None:
        """Give the cell's parent run what its table row carries: the table's metrics, key
        parameters, training speed, the data as dataset input and a samples table.

        Args:
            metrics: the metrics JSON the evaluate stage wrote.
        """
        if self.active and self.parent_id is not None:
            self._guard(self._publish_cell, cfg, task, system, metrics)  # unreadable files too

    def _publish_cell(self, cfg: Config, task: str, system: str, metrics: dict[str, Any]) -> None:
        data_dir = Path(stages.PROCESSED.format(task=task))
        samples_dir = stages.STAGES["sample"].outputs(task=task, system=system)["samples"]
        model_dir = stages.STAGES["train"].outputs(task=task, system=system)["model"]
        values = {**cell_metrics(metrics), **self._training_speed(f"{task}/{system}")}
        self._guard(self.client.log_batch, self.parent_id, metrics=_metric_entities(values, 0))
        if (data_dir / "stats.json").is_file():
            self._guard(self.client.log_inputs, self.parent_id,
                        datasets=[dataset_input(cfg, task, data_dir)])
        view = table_view([*table_numbers(metrics), *TRAIN_SPEED])
        self._guard(self.client.set_experiment_tag, self.experiment_id,
                    f"mlflow.sharedViewState.{TABLE_VIEW}", view)
        self._guard(self._log_table, self.parent_id, SAMPLES_TABLE,
                    samples_table(samples_dir, metrics))
        # Last: MLflow refuses to change a logged parameter (older code may have logged another).
        self._log_params(self.parent_id, cell_params(cfg, system, metrics, model_dir))

    def close(self, status: str) -> None:
        """End the run and the span of its parent with `status`; one last try after a failure."""
        self.flush()
        if self.client is None:
            return
        self._failed = False  # a run's status matters more than its numbers
        with contextlib.suppress(OSError), _store_lock(self.uri):  # e.g. the lock timed out
            for run_id in filter(None, (self.run_id, self.parent_id)):
                self._guard(self.client.set_terminated, run_id, status)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        if self.active:
            from mlflow.entities import Param

            items = [Param(k[:250], str(v)[:6000]) for k, v in params.items()]
            for start in range(0, len(items), 100):
                self._guard(self.client.log_batch, run_id, params=items[start:start + 100])

    def _log_table(self, run_id: str, name: str, table: dict[str, list[str]]) -> None:
        """Write (or replace) a table artifact. `MlflowClient.log_table` would append to an
        existing file, so a rerun would double it; this writes its format (pandas' "split" JSON)
        and tags the file as a table, as it does."""
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps({"columns": list(table),
                                        "data": [list(row) for row in zip(*table.values())]}))
            self.client.log_artifact(run_id, str(path))
        self.client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS,
                            json.dumps([{"path": name, "type": "table"}]))

    def _training_speed(self, cell: str) -> dict[str, float]:
        """train_wall_s and train_tokens_per_s of the newest finished train run of the cell."""
        query = (f"tags.`pipeline.cell` = '{cell}' and tags.stage = 'train' "
                 "and attributes.status = 'FINISHED'")
        runs = self._guard(self.client.search_runs, [self.experiment_id], query,
                           max_results=1, order_by=["attributes.end_time DESC"]) or []
        found = runs[0].data.metrics if runs else {}
        return {k: found[k] for k in TRAIN_SPEED if k in found}

    def _guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call MLflow; on failure warn (once per job) and stop logging."""
        if not self.active:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a stage
            LOG.log(logging.DEBUG if self._warned else logging.WARNING,
                    "MLflow logging failed (%s: %s); this job logs no more, results/ files are "
                    "unaffected", type(exc).__name__, exc)
            self._failed = self._warned = True
            return None


def _metric_entities(values: dict[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric
    from mlflow.utils.time import get_current_time_millis

    now = get_current_time_millis()
    return [Metric(k, float(v), now, step) for k, v in values.items()]


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


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold `<db>.lock` (SQLite stores only): SQLite does not arbitrate MLflow's creation and
    migration of a new database file, nor two get-or-creates of one experiment."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    with open(f"{db}.lock", "a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{db}.lock held by another job for over {LOCK_TIMEOUT_S} s")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={"mlflow.experimentKind":
                                                         "custom_model_development"})
        except MlflowException:  # created meanwhile by a job logging to the same server
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    return experiment.experiment_id


def _close_stale_runs(client: Any, experiment_id: str, cell: str) -> None:
    """End KILLED the runs of `cell` still RUNNING: left by a SIGKILLed job, since jobs of one cell
    run one after another. Each ends when it was last seen (last value logged, last end, start)."""
    query = f"tags.`pipeline.cell` = '{cell}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([experiment_id], filter_string=query):
        seen = [m.timestamp for m in run.data.to_proto().metrics]
        last = max([run.info.start_time, run.info.end_time or 0, *seen])
        client.set_terminated(run.info.run_id, "KILLED", end_time=last)


def _parent_run(client: Any, experiment_id: str, cfg: Config, task: str, system: str) -> str:
    """The parent run of this cell and configuration, created on first use; RUNNING while one of
    its stages runs and ended with it, so that its span covers its stages."""
    cell = f"{task}/{system}"
    data = provenance.data_checksum(Path(stages.PROCESSED.format(task=task)))
    config_id = f"{provenance.params_hash(cfg, task, system)}-{data or 'no-data'}"
    query = (f"tags.`pipeline.cell` = '{cell}' and tags.`pipeline.role` = 'cell' "
             f"and tags.`pipeline.config` = '{config_id}'")
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=cell, tags={
        "pipeline.cell": cell, "pipeline.role": "cell", "pipeline.config": config_id,
        "pipeline.params": cfg.path, "task": task, "system": system,
        "family": cfg.systems[system].family})
    return run.info.run_id


def _open(cfg: Config, stage: str, task: str | None, system: str | None,
          tags: dict[str, Any]) -> Tracker:
    """Create the stage's run (and find or create its parent) under the store lock."""
    from mlflow.tracking import MlflowClient

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri()
    cell = "/".join(x for x in (task, system) if x) or stage
    with _store_lock(uri):
        client = MlflowClient(uri)
        experiment_id = _experiment_id(client, task or "report")
        _close_stale_runs(client, experiment_id, cell)
        parent_id = (_parent_run(client, experiment_id, cfg, task, system) if task and system
                     else None)
        run_tags = {"stage": stage, "pipeline.cell": cell, "pipeline.role": "stage",
                    "pipeline.params": cfg.path, "mlflow.parentRunId": parent_id, **tags}
        run = client.create_run(experiment_id, run_name=f"{cell}/{stage}" if task else stage,
                                tags={k: str(v) for k, v in run_tags.items() if v is not None})
    return Tracker(client, run.info.run_id, parent_id, experiment_id, uri)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated` (main thread only), so `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str, task: str | None = None, system: str | None = None,
              tags: dict[str, Any] | None = None) -> Iterator[Tracker]:
    """Open the MLflow run of one stage job; yields a Tracker (inactive if MLflow is unusable).

    The run ends FINISHED, FAILED (an exception) or KILLED (SIGINT, SIGTERM).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with _sigterm_raises():
        tracker = Tracker()
        try:
            tracker = _open(cfg, stage, task, system, tags or {})
        except Exception as exc:  # noqa: BLE001
            LOG.warning("MLflow tracking unavailable (%s: %s); continuing without it",
                        type(exc).__name__, exc)
        status = "FAILED"
        try:
            yield tracker
            status = "FINISHED"
        except (KeyboardInterrupt, Terminated):
            status = "KILLED"
            raise
        finally:
            tracker.close(status)

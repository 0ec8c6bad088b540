"""Shared test set-up: offline hubs, quiet tools, and the repository root."""

import os
from pathlib import Path

import pytest

from tests.helpers.project import run_tiny_dag

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The project after a whole Snakemake run on params/tiny.yaml (minutes): shared, read-only;
    a test that changes it works on `tests.helpers.project.copy_of_run`."""
    return run_tiny_dag(tmp_path_factory.mktemp("tiny-run") / "project")

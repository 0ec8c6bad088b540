"""The whole DAG on the tiny configuration, with Snakemake and with DVC: same seeds, same numbers."""

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from tests.helpers.plans import dvc_changed, snakemake_plan
from tests.helpers.project import REPO, dvc, project_copy, snakemake

PARAMS = "params/tiny.yaml"
pytestmark = pytest.mark.slow


def _table_numbers(work: Path) -> dict[str, dict]:
    cfg = load_config(work / PARAMS)
    return {f"{t}/{s}": json.loads((work / f"results/{t}/{s}/metrics.json").read_text())["table"]
            for t, s in cfg.system_cells()}


@pytest.fixture
def snakemake_run(tiny_run):
    return tiny_run


def test_snakemake_builds_tables_figures_and_metrics(snakemake_run):
    work = snakemake_run
    tables = (work / "results/tables.md").read_text()
    cfg = load_config(work / PARAMS)
    for system in cfg.systems.values():
        assert system.label in tables
    assert sorted(p.name for p in (work / "results/figures").glob("*.png"))
    for task, system in cfg.system_cells():
        metrics = json.loads((work / f"results/{task}/{system}/metrics.json").read_text())
        assert 0.0 <= metrics["table"]["bleu"] <= 1.0
        assert (work / f"results/{task}/{system}/samples/provenance.json").is_file()


def test_a_rerun_has_nothing_to_do(snakemake_run):
    out = snakemake(snakemake_run, PARAMS, "results/tables.md")
    assert out.returncode == 0
    assert "Nothing to be done" in out.stdout + out.stderr


def test_dvc_repro_gives_the_same_numbers(snakemake_run, tmp_path):
    work = project_copy(tmp_path / "project", PARAMS)
    out = dvc(work, "repro")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dvc_numbers, snake_numbers = _table_numbers(work), _table_numbers(snakemake_run)
    # Identical, except BERTScore's float32 model arithmetic, which may differ in the 8th digit
    # between two processes (kernel choice), far below the 4 digits the table shows.
    assert dvc_numbers.keys() == snake_numbers.keys()
    for cell, numbers in snake_numbers.items():
        bert = numbers.pop("bertscore"), dvc_numbers[cell].pop("bertscore")
        assert numbers == dvc_numbers[cell], cell
        assert bert[0] == pytest.approx(bert[1], abs=1e-6), cell
    assert snakemake_plan(work, PARAMS) == set()   # what DVC ran, Snakemake takes as done
    shown = dvc(work, "metrics", "show", "--json")
    assert shown.returncode == 0 and "metrics.json" in shown.stdout
    # A parameter change marks exactly the stages that read it.
    params = (work / PARAMS).read_text().replace("max_iterations: 3", "max_iterations: 4")
    (work / PARAMS).write_text(params)
    assert dvc_changed(work) == {"sample-tinypara-levt", "report"}


def test_mlflow_ui_lists_the_runs_of_the_finished_pipeline(snakemake_run):
    """A real `mlflow ui` on 127.0.0.1, looked at in headless Chromium; screenshot kept."""
    from mlflow.tracking import MlflowClient

    from tests.helpers.mlflow_ui import chromium, mlflow_ui, render

    if chromium() is None:
        pytest.skip("Chromium is not installed (.ci/run installs it)")
    db = snakemake_run / "mlflow.db"
    cfg = load_config(snakemake_run / PARAMS)
    task = next(iter(cfg.tasks))
    experiment = MlflowClient(f"sqlite:///{db}").get_experiment_by_name(task)
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with mlflow_ui(db) as url:
        dom = render(f"{url}/#/experiments/{experiment.experiment_id}/runs",
                     artifacts / "mlflow-ui.png")
    for system in cfg.tasks[task].systems:
        assert f"{task}/{system}" in dom
    assert (artifacts / "mlflow-ui.png").stat().st_size > 10_000


def test_snakemake_report_bundles_tables_and_figures(snakemake_run, tmp_path):
    out = snakemake(snakemake_run, PARAMS, "--report", str(tmp_path / "report.html"))
    assert out.returncode == 0, out.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert "tables.md" in html and "bleu_vs_candidates.png" in html


def test_dvc_plots_data_lists_every_system(snakemake_run):
    records = json.loads((snakemake_run / "results/plots/bleu_vs_candidates.json").read_text())
    cfg = load_config(snakemake_run / PARAMS)
    assert {r["system"] for r in records} == {s for _, s in cfg.system_cells()}
    assert {r["size"] for r in records} == set(cfg.evaluation.mbr_sizes)

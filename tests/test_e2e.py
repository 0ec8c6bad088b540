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
    out = dvc(work, "repro", "dvc/tiny/dvc.yaml")
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


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _parent_runs(db: Path, task: str) -> tuple:
    """The tracking client, the task's experiment and its parent runs by system."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(task)
    runs = client.search_runs([experiment.experiment_id], "tags.`pipeline.role` = 'cell'")
    return client, experiment, {run.data.tags["system"]: run for run in runs}


def test_mlflow_parent_runs_carry_the_table_rows(snakemake_run, tmp_path):
    """Each (task, system) parent: the table's metrics, the data as input, a samples table, a span
    over its stages."""
    from pipeline.cell_summary import NUM_SAMPLE_ROWS, SAMPLES_TABLE

    cfg = load_config(snakemake_run / PARAMS)
    for task in cfg.tasks:
        client, experiment, parents = _parent_runs(snakemake_run / "mlflow.db", task)
        assert sorted(parents) == sorted(cfg.tasks[task].systems)
        checksum = _read(snakemake_run / f"data/processed/{task}/stats.json")["raw_sha256"]
        for system, run in parents.items():
            cell = snakemake_run / f"results/{task}/{system}"
            metrics = _read(cell / "metrics.json")
            numbers = {k: v for k, v in metrics["table"].items() if isinstance(v, float)}
            assert {k: run.data.metrics[k] for k in numbers} == numbers, system
            assert run.data.metrics["mbr_size"] == max(metrics["mbr_sizes"])
            assert run.data.metrics["diversity_k"] == metrics["diversity"]["k"]
            (dataset,) = run.inputs.dataset_inputs
            assert dataset.dataset.digest == checksum[:36]
            assert json.loads(dataset.dataset.profile)["sha256"] == checksum
            logged = _read(Path(client.download_artifacts(run.info.run_id, SAMPLES_TABLE,
                                                          tmp_path)))
            assert len(logged["data"]) == min(NUM_SAMPLE_ROWS, metrics["num_sources"])
            assert logged["columns"][:3] == ["source", "reference", "chosen"]
            children = client.search_runs([experiment.experiment_id],
                                          f"tags.mlflow.parentRunId = '{run.info.run_id}'")
            assert {run.info.status, *(c.info.status for c in children)} == {"FINISHED"}
            assert run.info.start_time <= min(c.info.start_time for c in children)
            assert run.info.end_time >= max(c.info.end_time for c in children)
            if cfg.systems[system].train is not None:
                size = _read(cell / "model/config.json")["provenance"]["num_parameters"]
                assert run.data.params["num_parameters"] == str(size)
                assert run.data.metrics["train_tokens_per_s"] > 0


def test_mlflow_ui_shows_bleu_of_every_system_and_compares_two(snakemake_run):
    """A real `mlflow ui` on 127.0.0.1, looked at in headless Chromium: the run list in the
    pipeline's table view, and the Compare view of DiffuSeq and the Transformer (screenshots
    kept in test-artifacts/)."""
    from pipeline.cell_summary import TABLE_VIEW
    from tests.helpers.mlflow_ui import (chromium, compare_path, grid_cells, mlflow_ui, render,
                                         table_view_path)

    if chromium() is None:
        pytest.skip("Chromium is not installed (.ci/run installs it)")
    cfg = load_config(snakemake_run / PARAMS)
    task = next(iter(cfg.tasks))
    _, experiment, parents = _parent_runs(snakemake_run / "mlflow.db", task)
    compared = [next(run for system, run in parents.items() if cfg.systems[system].family == family)
                for family in ("diffuseq", "transformer")]
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with mlflow_ui(snakemake_run / "mlflow.db") as url:
        listed = grid_cells(render(url + table_view_path(experiment.experiment_id, TABLE_VIEW),
                                   artifacts / "mlflow-ui.png"))
        compare_dom = render(url + compare_path(experiment.experiment_id,
                                                [run.info.run_id for run in compared]),
                             artifacts / "mlflow-compare.png", window=(1600, 2600))
    assert set(listed) == {run.info.run_id for run in parents.values()}  # parents only
    for system, run in parents.items():
        assert float(listed[run.info.run_id]["metrics.`bleu`"]) == run.data.metrics["bleu"], system
    assert "Comparing 2 Runs" in compare_dom
    for run in compared:
        assert run.info.run_name in compare_dom and run.data.params["decode_method"] in compare_dom
    assert (artifacts / "mlflow-compare.png").stat().st_size > 10_000


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

"""A job reruns only when what it computes changed (the rule in pipeline/stages.py), under both
engines, and adding a model family is one module plus its parameter block.

Each edit is made in a copy of a finished tiny run; DVC must report exactly the stages whose own
inputs changed and Snakemake must plan exactly those and what follows them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.helpers.plans import dvc_changed, edited, snakemake_plan
from tests.helpers.project import REPO, TINY, copy_of_run, engine_env, snakemake

pytestmark = pytest.mark.slow
TASK = "tinypara"


def _jobs(system: str, *stages: str) -> set[str]:
    return {f"{stage}-{TASK}-{system}" for stage in stages}


def _append(line: str):
    return lambda text: text + line


def _new_stage(text: str) -> str:
    """A stage added to the table (and to the CLI's help), producing a file nobody asks for."""
    text = text.replace('STAGE_HELP = {', 'STAGE_HELP = {\n    "lengths": "length statistics",')
    return text.replace(
        ']}\n\n\nSTAGE_HELP', '    Stage("lengths", ("task",), deps={"data": PROCESSED}, outs={"stats": '
        '"results/{task}/lengths.json"}, code=("pipeline.data.dataset",)),\n]}\n\n\nSTAGE_HELP')


def _tool(work, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=work, check=True,
                   capture_output=True, env=engine_env())


@pytest.fixture
def work(tiny_run, tmp_path):
    return copy_of_run(tiny_run, tmp_path / "project")


def test_a_finished_run_is_up_to_date_for_both_engines(work):
    assert snakemake_plan(work, TINY) == set()
    assert dvc_changed(work) == set()


@pytest.mark.parametrize("path, change, changed, downstream", [
    ("pipeline/__main__.py", _append("\n# a new CLI option\n"), set(), set()),
    ("pipeline/tracking.py", _append("\nEXTRA_TRACKING_FIELD = 1\n"), set(), set()),
    ("pipeline/provenance.py", _append("\n# recorded differently\n"), set(), set()),
    ("pipeline/models/registry.py", _append("\n# listing changed\n"), set(), set()),
    ("pipeline/models/levt.py", _append("\n# LevT edited\n"), _jobs("levt", "train", "sample"),
     _jobs("levt", "evaluate") | {"report"}),
    ("pipeline/diffusion/process.py", _append("\n# the forward process edited\n"),
     _jobs("diffuseq", "train", "sample"), _jobs("diffuseq", "evaluate") | {"report"}),
    ("pipeline/metrics.py", _append("\n# a metric edited\n"),
     {f"evaluate-{TASK}-{s}" for s in ("diffuseq", "gru_attention", "transformer", "gpt2", "gpvae",
                                       "levt", "copy_source", "random_target")}, {"report"}),
])
def test_an_edit_reruns_exactly_the_jobs_it_computes(work, path, change, changed, downstream):
    with edited(work / path, change):
        assert dvc_changed(work) == changed
        assert snakemake_plan(work, TINY) == changed | downstream


def test_a_new_stage_reruns_nothing_that_exists(work):
    with edited(work / "pipeline/stages.py", _new_stage):
        _tool(work, "dvc-yaml", "--params", TINY)
        assert dvc_changed(work) == {f"lengths-{TASK}"}     # never ran: DVC lists it, nothing else
        assert snakemake_plan(work, TINY) == set()
        assert snakemake_plan(work, TINY, f"results/{TASK}/lengths.json") == {f"lengths-{TASK}"}


def test_adding_a_family_is_one_module_and_its_parameters(work):
    """The README's "Adding a system": the module, its block, regenerated schema and dvc.yaml;
    then it runs through train, sample, evaluate and report like the others."""
    shutil.copy(REPO / "tests/helpers/tiny_model.py", work / "pipeline/models/tiny.py")
    params = yaml.safe_load((work / TINY).read_text())
    params["systems"]["tiny"] = {
        "family": "tiny", "label": "Tiny toy family", "decode": {"max_len": 6},
        "train": {"steps": 4, "batch_size": 8, "micro_batch": 8, "checkpoint_every": 2,
                  "eval_every": 2, "eval_batches": 1}}
    params["tasks"][TASK]["systems"].append("tiny")
    (work / TINY).write_text(yaml.safe_dump(params, sort_keys=False))
    _tool(work, "schema")
    _tool(work, "dvc-yaml", "--params", TINY)

    new = _jobs("tiny", "train", "sample", "evaluate") | {"report"}
    assert dvc_changed(work) == new
    assert snakemake_plan(work, TINY) == new
    out = snakemake(work, TINY, "results/tables.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "| Tiny toy family |" in (work / "results/tables.md").read_text()
    assert dvc_changed(work) == set() and snakemake_plan(work, TINY) == set()


def test_the_parameter_file_path_is_not_part_of_a_job(work):
    shutil.copy(work / TINY, work / "params/tiny copy.yaml")
    assert snakemake_plan(work, "./params/../params/tiny.yaml") == set()
    assert snakemake_plan(work, "params/tiny copy.yaml") == set()


def test_a_typo_is_refused_in_one_line_before_the_training_state_is_touched(work):
    state = work / f"results/{TASK}/diffuseq/train_state"
    before = {p: p.stat().st_mtime_ns for p in state.rglob("*")}
    assert any(p.name == "fingerprint.txt" for p in before)
    with edited(work / TINY, lambda text: text.replace("micro_batch: 8", "micro_bach: 8")):
        out = subprocess.run([sys.executable, "-m", "pipeline", "train", "--params", TINY,
                              "--task", TASK, "--system", "diffuseq"], cwd=work, text=True,
                             capture_output=True, env=engine_env())
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {TINY}: ") and "Traceback" not in out.stderr
    assert "systems.diffuseq.train: Additional properties are not allowed ('micro_bach'" in out.stderr
    assert {p: p.stat().st_mtime_ns for p in state.rglob("*")} == before


def test_a_sweep_file_adds_only_the_sweep_jobs_and_the_report(work):
    """A parameter file that extends the run's with a `sweep:` block shares every job it has."""
    (work / "params/tiny_sweep.yaml").write_text(
        "extends: tiny.yaml\nreport_dir: results/sweep\n"
        "sweep: {systems: [diffuseq], num_sources: 4, mbr_size: 3,\n"
        "        grid: [{sampler: ddim, eta: 1.0, steps: [1, 2]}, {sampler: ddpm, steps: 100,"
        " num_sources: 2}]}\n")
    assert snakemake_plan(work, "params/tiny_sweep.yaml") == {f"sweep-{TASK}-diffuseq", "report"}
    out = snakemake(work, "params/tiny_sweep.yaml")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    records = json.loads((work / f"results/{TASK}/diffuseq/sampler_sweep.json").read_text())
    assert [(r["sampler"], r["steps"], r["num_sources"]) for r in records] == [
        ("ddim", 1, 4), ("ddim", 2, 4), ("ddpm", 100, 2)]
    assert (work / "results/sweep/figures/quality_vs_steps.png").stat().st_size > 5000
    assert snakemake_plan(work, TINY) == set()           # the tiny run itself is still up to date

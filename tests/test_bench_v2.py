"""bench/bench_v2.py, the DiffuSeq / DiffuSeq-v2 measurements of the closing notes, runs end to
end at toy size (so that it follows the APIs it calls)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.project import REPO


def _bench(project, out, *args: str) -> None:
    """The repository's bench script, run in the finished tiny project (its data and params)."""
    subprocess.run([sys.executable, str(REPO / "bench" / "bench_v2.py"), "--params",
                    "params/tiny.yaml", "--data", "data/processed/tinypara", "--out", str(out),
                    *args], cwd=project, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   check=True, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_convergence_then_sweep_on_the_tiny_task(tiny_run, tmp_path):
    _bench(tiny_run, tmp_path, "convergence", "--system", "diffuseq", "--steps", "4",
           "--probe-every", "2", "--probe-sources", "3")
    record = json.loads((tmp_path / "diffuseq" / "convergence.json").read_text())
    assert [r["step"] for r in record["records"]] == [2, 4]
    assert all(0 <= r[f"bleu_{name}"] <= 1 for r in record["records"] for name in record["probes"])
    assert record["records"][0]["train_s"] < record["records"][1]["train_s"]

    _bench(tiny_run, tmp_path, "sweep", "--model", f"diffuseq={tmp_path / 'diffuseq' / 'model'}",
           "--sources", "2", "--ddpm-seeds", "1")
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    (model,) = sweep["models"].values()
    paper = model["ddpm_paper_procedure"]
    assert paper["steps"] == 100 and paper["seeds"] == [1]           # tiny.yaml's diffusion_steps
    assert paper["wall_s_10_runs_extrapolated"] == pytest.approx(10 * paper["wall_s_per_run"][0])
    assert [(p["sampler"], p["steps"]) for p in model["fast"]] == [
        ("dpm_solver++", 5), ("dpm_solver++", 10), ("dpm_solver++", 20), ("ddim", 20), ("ddim", 100)]
    assert all(p["bleu_mbr"] is not None and p["num_sources"] == 2 for p in model["fast"])

"""A user's own data (tests/fixtures/data/ownpara: the quirks of real files) through download,
prepare, the floor rows, evaluate and report: prepare says what it found, an edited data file
reruns what it feeds, a label edit reruns only the report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from tests.helpers.plans import dvc_changed, edited, snakemake_plan
from tests.helpers.project import REPO, engine_env, project_copy, snakemake

pytestmark = pytest.mark.slow
PARAMS = "params/own.yaml"
FIXTURE = REPO / "tests/fixtures/data/ownpara"
FLOORS = ("copy_source", "random_target")


def _lines(path):
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    data = root / "my data"                      # a path with a space, as users have
    shutil.copytree(FIXTURE, data)
    work = project_copy(root / "project", "params/tiny.yaml")
    params = yaml.safe_load((work / "params/tiny.yaml").read_text())
    params["tasks"] = {"ownpara": {
        "label": "My paraphrases", "source": {"kind": "local", "uri": str(data)},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 300}, "seq_len": 40,
        "on_bad_line": "skip", "paper_task": "paraphrase", "systems": list(FLOORS)}}
    params["systems"] = {name: params["systems"][name] for name in FLOORS}
    (work / PARAMS).write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc/tiny/dvc.yaml").unlink()
    subprocess.run([sys.executable, "-m", "pipeline", "dvc-yaml", "--params", PARAMS], cwd=work,
                   check=True, capture_output=True, env=engine_env())
    out = snakemake(work, PARAMS, "results/tables.md")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return work, data


def test_prepare_reports_what_it_found_in_the_users_files(own_run):
    work, data = own_run
    log = (work / "logs/prepare/ownpara.log").read_text()
    train = [(p["src"], p["trg"]) for p in _lines(data / "train.jsonl")]
    test = [(p["src"], p["trg"]) for p in _lines(data / "test.jsonl")]
    duplicates = sum(n - 1 for n in Counter(train).values())
    seen = sum(src in {s for s, _ in train} for src, _ in test)
    assert duplicates >= 5 and seen >= 3
    assert f"ownpara train: {duplicates} duplicate pairs" in log
    assert f"ownpara test: {seen} sources also in train" in log
    assert f"skipped {data}/valid.jsonl:41: field 'trg' is empty" in log      # the user's file
    assert re.search(r"ownpara valid: 40 pairs kept, 1 skipped", log)
    stats = json.loads((work / "data/processed/ownpara/stats.json").read_text())
    assert stats["splits"]["train"]["truncated"] == 2 and stats["splits"]["test"]["truncated"] == 1
    assert "seq_len_keeping_99pct" in stats["splits"]["test"]
    assert stats["duplicate_pairs"]["train"] == duplicates
    # the text arrives as written: entities and accents, CRLF and the missing final newline
    assert stats["splits"]["train"]["count"] == 307 and stats["splits"]["test"]["count"] == 40


def test_the_table_shows_no_paper_value_for_what_it_does_not_measure(own_run):
    work, _ = own_run
    tables = (work / "results/tables.md").read_text()
    assert "## My paraphrases (paper task: paraphrase)" in tables
    assert not re.search(r"\(paper \d", tables)   # floors have no paper row: nothing is compared


def test_an_edited_data_file_reruns_what_it_feeds_and_a_label_only_the_report(own_run):
    work, data = own_run
    assert snakemake_plan(work, PARAMS) == set() and dvc_changed(work) == set()
    with edited(data / "train.jsonl", lambda text: text + '{"src": "a new question ?", '
                                                          '"trg": "a new answer ?"}\r\n'):
        downstream = {f"{stage}-ownpara-{s}" for s in FLOORS for stage in ("sample", "evaluate")}
        assert snakemake_plan(work, PARAMS) == {"download-ownpara", "prepare-ownpara", "report",
                                                *downstream}
        assert dvc_changed(work) == {"download-ownpara"}
    with edited(work / PARAMS, lambda text: text.replace("My paraphrases", "Our paraphrases")):
        assert snakemake_plan(work, PARAMS) == {"report"} and dvc_changed(work) == {"report"}


def test_a_bad_line_in_error_mode_names_the_users_file(own_run):
    work, data = own_run
    with edited(work / PARAMS, lambda text: text.replace("on_bad_line: skip", "on_bad_line: error")):
        out = snakemake(work, PARAMS, "results/tables.md", "--forcerun", "prepare")
    assert out.returncode != 0
    log = (work / "logs/prepare/ownpara.log").read_text()
    assert f"error: {data}/valid.jsonl:41: field 'trg' is empty" in log

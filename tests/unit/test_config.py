"""Parameter files: every shipped file loads; a wrong key or type is an error naming the key."""

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import SCHEMA_PATH, ConfigError, load_config
from pipeline.models.registry import system_configs
from pipeline.schema import params_schema

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["params/default.yaml", "params/paper.yaml", "params/tiny.yaml", "params/sweep.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_parameter_files_load(name):
    cfg = load_config(REPO / name)
    assert cfg.tasks and cfg.system_cells()
    for name, system in cfg.systems.items():
        system_configs(system, f"systems.{name}")


def test_paper_file_has_the_papers_four_tasks_and_settings():
    cfg = load_config(REPO / "params/paper.yaml")
    assert {t.paper_task for t in cfg.tasks.values()} == {"dialogue", "qg", "simplification",
                                                          "paraphrase"}
    steps = {t.paper_task: cfg.systems[f"diffuseq_{name}"].train.steps
             for name, t in cfg.tasks.items()}
    assert steps == {"paraphrase": 50000, "qg": 40000, "simplification": 80000, "dialogue": 140000}
    model, _ = system_configs(cfg.systems["diffuseq_qqp"], "systems.diffuseq_qqp")
    assert model.diffusion_steps == 2000 and model.noise_schedule == "sqrt"


def _write(tmp_path, mutate):
    data = yaml.safe_load((REPO / "params/default.yaml").read_text())
    mutate(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["tasks"]["minipara"].update(seq_lenn=64), "tasks.minipara"),
    (lambda d: d["tasks"]["minipara"].update(seq_len="64"), "tasks.minipara.seq_len"),
    (lambda d: d["sampling"].update(seeds="1,2"), "sampling.seeds"),
    (lambda d: d["systems"]["copy_source"].update(family="copy_sauce"), "systems.copy_source.family"),
    (lambda d: d["evaluation"].update(mbr_utility="meteor"), "evaluation.mbr_utility"),
])
def test_wrong_key_or_type_names_the_key(tmp_path, mutate, key):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and f"{key}:" in str(err.value)


def test_family_block_is_checked_against_its_own_config(tmp_path):
    path = _write(tmp_path, lambda d: d["systems"]["diffuseq"]["model"].update(hiden_dim=3))
    with pytest.raises(ConfigError, match="hiden_dim"):
        load_config(path)


def test_task_naming_an_undefined_system_is_an_error(tmp_path):
    path = _write(tmp_path, lambda d: d["tasks"]["minipara"]["systems"].append("nonesuch"))
    with pytest.raises(ConfigError, match="nonesuch"):
        load_config(path)


def test_committed_schema_is_fresh():
    assert json.loads(SCHEMA_PATH.read_text()) == params_schema(), \
        "workflow/schemas/params.schema.json is stale: run `python -m pipeline schema`"


def _rename(section: str, old: str, new: str):
    def mutate(d):
        d[section][new] = d[section].pop(old)
        for task in d["tasks"].values():
            task["systems"] = [new if s == old else s for s in task["systems"]]
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_rename("tasks", "minipara", "../../docs"), "tasks: '../../docs' is not a valid name"),
    (_rename("systems", "copy_source", "x;touch PWNED;#"),
     "systems: 'x;touch PWNED;#' is not a valid name"),
    (lambda d: d.update(report_dir="../elsewhere"), "report_dir: '../elsewhere' does not match"),
    (lambda d: d["systems"]["diffuseq"]["train"].update(steps=0),
     "systems.diffuseq.train.steps: 0 is less than the minimum of 1"),
    (lambda d: d["systems"]["diffuseq"]["train"].update(steps=-5), "train.steps: -5 is less"),
    (lambda d: d["systems"]["diffuseq"]["train"].update(checkpoint_every=0), "checkpoint_every: 0"),
    (lambda d: d["systems"]["diffuseq"]["train"].update(micro_batch=48),
     "batch_size = 64 is not a multiple of micro_batch x num_processes = 48 x 1"),
    (lambda d: d["tasks"]["minipara"].update(seq_len=4), "tasks.minipara.seq_len: 4 is less than"),
    (lambda d: d["sampling"].update(seeds=[1, 1, 2]), "sampling.seeds: [1, 1, 2] has non-unique"),
    (lambda d: d["sampling"].update(seeds=[]), "sampling.seeds: [] should be non-empty"),
    (lambda d: d["sampling"].update(batch_size=0), "sampling.batch_size: 0 is less than"),
    (lambda d: d["evaluation"].update(diversity_k=0), "evaluation.diversity_k: 0 is less than"),
    (lambda d: d["evaluation"].update(diversity_k=11), "diversity_k = 11 exceeds the 10"),
    (lambda d: d["evaluation"].update(mbr_sizes=[0]), "evaluation.mbr_sizes.0: 0 is less than"),
    (lambda d: d["evaluation"].update(mbr_sizes=[1, 20]), "mbr_sizes [20] exceed the 10"),
])
def test_what_cannot_make_sense_is_refused_naming_the_key(tmp_path, mutate, message):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, mutate))
    assert message in str(err.value)


def test_a_key_inside_a_yaml_alias_is_named(tmp_path):
    """params/default.yaml's AR systems share their train block through an anchor."""
    text = (REPO / "params/default.yaml").read_text().replace("{steps: 400,", "{steps: 0,")
    assert "*ar_train" in text
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "systems.transformer.train.steps: 0 is less than the minimum of 1" in str(err.value)
    assert "not valid under any of the given schemas" not in str(err.value)


def test_a_file_extends_another_and_changes_some_keys(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text((REPO / "params/default.yaml").read_text())
    (tmp_path / "more").mkdir()
    overlay = tmp_path / "more/overlay.yaml"
    overlay.write_text("extends: ../base.yaml\nreport_dir: results/more\n"
                       "sampling: {seeds: [1, 2, 3]}\nevaluation: {mbr_sizes: [1, 3]}\n")
    cfg, default = load_config(overlay), load_config(base)
    assert cfg.report_dir == "results/more" and cfg.sampling.seeds == [1, 2, 3]
    assert cfg.sampling.batch_size == default.sampling.batch_size        # merged, not replaced
    assert cfg.systems == default.systems and cfg.path == str(overlay)


def test_extends_in_a_circle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="goes round in a circle"):
        load_config(tmp_path / "a.yaml")

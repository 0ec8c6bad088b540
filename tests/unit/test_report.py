"""pipeline.report: tables.md and the figures from hand-made metrics JSONs."""

import json

import pytest

from pipeline.config import (Config, EvaluationConfig, SamplingConfig, SourceConfig, SystemConfig,
                             TaskConfig, TokenizerConfig)
from pipeline.report.plots import FIGURES
from pipeline.report.tables import load_paper_table, paper_system, write_report

SYSTEMS = {"diffuseq": SystemConfig(family="diffuseq", label="DiffuSeq"),
           "gpt2": SystemConfig(family="gpt2", label="GPT2-base"),
           "copy": SystemConfig(family="copy_source", label="copy source"),
           "tiny": SystemConfig(family="transformer", label="Transformer-base")}


def make_config(tasks: dict[str, list[str]]) -> Config:
    def task(systems: list[str], paper: str | None) -> TaskConfig:
        return TaskConfig(source=SourceConfig(kind="local", uri="unused"), seq_len=32,
                          tokenizer=TokenizerConfig(kind="wordpiece"), systems=systems,
                          paper_task=paper, label=f"Task {paper or 'own'}")

    return Config(scale="unit-test", systems=SYSTEMS, sampling=SamplingConfig(seeds=[1, 2, 3]),
                  tasks={name: task(systems, "paraphrase" if name == "qqp" else None)
                         for name, systems in tasks.items()},
                  evaluation=EvaluationConfig(mbr_sizes=[1, 3]))


def metrics_json(system: str, bleu: float, div4: float, *, steps: bool = False, **extra) -> dict:
    table = {"bleu": bleu, "rouge_l": 0.5, "bertscore": None, "dist1": 0.9, "self_bleu": 1 - div4,
             "div4": div4, "len": 10.0, "word_count": 10.0, "sacrebleu": 100 * bleu,
             "quality_from": "mbr@3"}
    out = {"system": system, "family": SYSTEMS[system].family, "label": SYSTEMS[system].label,
           "mbr_sizes": [1, 3], "mbr": {"1": {"bleu": bleu - 0.05}, "3": {"bleu": bleu}},
           "table": table, "decode_method": "ddpm" if system == "diffuseq" else "sample",
           "generation_seconds": 4.0, "bertscore_model": "builtin:minilm", "nltk_version": "3.10.4",
           "provenance": {"data_sha256": "cd" * 32}, **extra}
    if steps:
        out["stepwise"] = [{"fraction": f, "bleu": bleu * f, "div4": div4} for f in (0.25, 0.5, 1.0)]
    return out


def write_metrics(root, task: str, system: str, data: dict) -> None:
    path = root / "results" / task / system / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_paper_mapping_and_table_copy():
    table = load_paper_table()
    assert table[("paraphrase", "DiffuSeq")]["bleu"] == 0.2413
    assert len(table) == 28
    assert paper_system("gpt2", "GPT2-large (from scratch)") == "GPT2-large FT"
    assert paper_system("gpt2", "GPT-2 base") == "GPT2-base FT"
    assert paper_system("levt", "") == "NAR-LevT"
    assert paper_system("diffuseq", "DiffuSeq") == "DiffuSeq"
    assert paper_system("diffuseq", "DiffuSeq-v2") is None
    assert paper_system("copy_source", "copy source") is None


def test_tables_and_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = make_config({"qqp": ["copy", "diffuseq", "gpt2"], "own": ["tiny"]})
    write_metrics(tmp_path, "qqp", "copy", metrics_json("copy", 0.9, 0.1))
    write_metrics(tmp_path, "qqp", "diffuseq", metrics_json("diffuseq", 0.2413, 0.8641, steps=True,
                                                            pretrained=False))   # as in the paper
    write_metrics(tmp_path, "qqp", "gpt2", metrics_json("gpt2", 0.1980, 0.6245, pretrained=False))
    write_metrics(tmp_path, "own", "tiny", metrics_json("tiny", 0.1, 0.5, pretrained=False))
    write_report(cfg, tmp_path / "results" / "tables.md", tmp_path / "results" / "figures")

    text = (tmp_path / "results" / "tables.md").read_text()
    qqp = text.split("## Task own")[0]
    lines = [line for line in qqp.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| System | BLEU ↑ | ROUGE-L ↑ | BERTScore ↑ | dist-1 ↑ | "
                               "self-BLEU ↓ / div-4 ↑ | Len")
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| DiffuSeq", "| GPT2-base †",
                                                            "| copy source (floor)"]
    # the floor's BLEU 0.9 is higher but excluded from the bold; paper values sit beside ours
    assert "**0.2413** (paper 0.2413)" in lines[1]
    assert "0.1980 (paper 0.1980)" in lines[2] and "**0.1980**" not in lines[2]
    assert "**0.1359** / **0.8641** (paper 0.2732 / 0.8641)" in lines[1]
    assert "**" not in lines[3] and "paper" not in lines[3]
    assert "| – (paper 0.8365) |" in lines[1]                     # BERTScore disabled
    assert "trained from scratch" in qqp and "scale `unit-test`" in qqp
    assert "DiffuSeq: ddpm" in qqp and "builtin:minilm" in qqp and "NLTK 3.10.4" in qqp
    assert "cdcdcdcd" in qqp
    own = text.split("## Task own")[1]
    assert "(paper" not in own and "**0.1000**" in own and "†" not in own

    for name in FIGURES:
        data = (tmp_path / "results" / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(p.name for p in (tmp_path / "results" / "figures").iterdir()) == sorted(FIGURES)


def test_figure_without_data_is_still_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = make_config({"own": ["tiny"]})
    write_metrics(tmp_path, "own", "tiny", metrics_json("tiny", 0.1, 0.5, generation_seconds=None))
    write_report(cfg, tmp_path / "tables.md", tmp_path / "figures")
    assert (tmp_path / "figures" / "stepwise.png").stat().st_size > 5000
    assert (tmp_path / "figures" / "inference_time.png").is_file()


def test_missing_metrics_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="results/own/tiny/metrics.json"):
        write_report(make_config({"own": ["tiny"]}), tmp_path / "tables.md", tmp_path / "figures")
    assert not (tmp_path / "tables.md").exists()

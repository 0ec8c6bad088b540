"""pipeline.evaluate on hand-made sample folders in the authors' output format."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import (BertScoreConfig, ComputeConfig, Config, EvaluationConfig,
                             SamplingConfig, SourceConfig, SystemConfig, TaskConfig,
                             TokenizerConfig)
from pipeline.data.jsonl import DataError
from pipeline.evaluate import evaluate_authors_folder, evaluate_system
from tests.unit.test_mbr import authors_pick
from tests.unit.test_metrics import nltk_bleu

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
SEEDS = [101, 102, 103, 104, 105]


def make_config(bertscore: bool = False, seeds: list[int] = SEEDS) -> Config:
    task = TaskConfig(source=SourceConfig(kind="local", uri="unused"),
                      tokenizer=TokenizerConfig(kind="wordpiece"), seq_len=32,
                      systems=["diffuseq", "beam"], paper_task="paraphrase")
    return Config(scale="test", tasks={"para": task},
                  systems={"diffuseq": SystemConfig(family="diffuseq", label="DiffuSeq"),
                           "beam": SystemConfig(family="transformer", label="Transformer-base")},
                  sampling=SamplingConfig(seeds=seeds),
                  evaluation=EvaluationConfig(mbr_sizes=[1, 3, 5, 10], diversity_k=3,
                                              bertscore=BertScoreConfig(enabled=bertscore)),
                  compute=ComputeConfig(device="cpu"))


def clean(text: str) -> str:
    for token in ("[CLS]", "[SEP]", "[PAD]"):
        text = text.replace(token, "")
    return text.strip()


def read(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stats.json").write_text(json.dumps({"raw_sha256": "ab" * 32,
                                                              "splits": {"test": {"count": 4}}}))
    return tmp_path / "data"


def test_mbr_picks_equal_the_paper_rule_applied_with_nltk(tmp_path, data_dir):
    folder = FIXTURES / "paraphrase_diffuseq"
    out = tmp_path / "metrics.json"
    result = evaluate_system(make_config(), "para", "diffuseq", folder, data_dir, out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    files = [read(folder, f"seed{s}.jsonl") for s in SEEDS]
    refs = [clean(r["reference"]) for r in files[0]]
    assert result["mbr_sizes"] == [1, 3, 5] and result["mbr_sizes_skipped"] == [10]
    for n in (1, 3, 5):
        expected = [authors_pick([clean(f[i]["recover"]) for f in files[:n]])
                    for i in range(len(refs))]
        assert result["mbr"][str(n)]["picks"] == expected
        chosen = [clean(files[k][i]["recover"]) for i, k in enumerate(expected)]
        bleu = np.mean([nltk_bleu(r, h) for r, h in zip(refs, chosen)])
        assert result["mbr"][str(n)]["bleu"] == pytest.approx(bleu, abs=1e-15)
    assert result["table"]["quality_from"] == "mbr@5"
    assert result["table"]["bleu"] == result["mbr"]["5"]["bleu"]


def test_len_diversity_and_records(tmp_path, data_dir):
    folder = FIXTURES / "paraphrase_diffuseq"
    result = evaluate_system(make_config(), "para", "diffuseq", folder, data_dir, tmp_path / "m.json")
    # seed101 as written: 8, 8, 7 and "[CLS] [SEP]" -> " " -> 2 (the authors' count)
    assert result["mbr"]["1"]["len"] == pytest.approx((8 + 8 + 7 + 2) / 4)
    assert result["mbr"]["1"]["word_count"] == pytest.approx((6 + 6 + 5 + 0) / 4)
    files = [read(folder, f"seed{s}.jsonl") for s in SEEDS[:3]]
    self_bleu = np.mean([np.mean([nltk_bleu(clean(files[b][i]["recover"]),
                                            clean(files[a][i]["recover"]))
                                  for a, b in ((0, 1), (0, 2), (1, 2))]) for i in range(4)])
    assert result["diversity"] == pytest.approx({"k": 3, "self_bleu": self_bleu, "div4": 0.5})
    assert [p["fraction"] for p in result["stepwise"]] == [0.5, 1.0]
    assert result["stepwise"][0]["div4"] == 0.0                  # "the the the": no 4-gram
    assert result["decode_method"] == "sampler=ddpm, steps=2000"
    assert result["generation_seconds"] == 12.5
    assert result["pretrained"] is True and result["generation"]["decode"]["clamp_step"] == 0
    assert result["provenance"]["data_sha256"] == "ab" * 32
    assert len(result["provenance"]["params_hash"]) == 12
    assert result["nltk_version"] and result["bertscore_model"] is None


def test_best_jsonl_gives_the_table_quality(tmp_path, data_dir):
    folder = FIXTURES / "paraphrase_beam"
    result = evaluate_system(make_config(), "para", "beam", folder, data_dir, tmp_path / "m.json")
    best = read(folder, "best.jsonl")
    bleu = np.mean([nltk_bleu(clean(r["reference"]), r["recover"]) for r in best])
    assert result["table"]["quality_from"] == "best"
    assert result["table"]["bleu"] == pytest.approx(bleu, abs=1e-15) == result["best"]["bleu"]
    assert result["pretrained"] is False
    assert result["decode_method"] == "candidates: method=sample; quality: method=beam"


def test_bertscore_column_with_the_builtin_model(tmp_path, data_dir):
    folder = FIXTURES / "paraphrase_diffuseq"
    cfg = make_config(bertscore=True, seeds=SEEDS[:3])
    result = evaluate_system(cfg, "para", "diffuseq", folder, data_dir, tmp_path / "m.json")
    assert result["bertscore_model"] == "builtin:minilm"
    scores = {n: result["mbr"][n]["bertscore"] for n in ("1", "3")}
    assert all(0.0 < s < 1.0 for s in scores.values())
    # MBR@1 keeps seed101's empty output for source 4, which scores 0 and lowers the mean
    assert scores["1"] < scores["3"]


def broken_copy(tmp_path: Path, seed: int, edit) -> Path:
    folder = tmp_path / "samples"
    shutil.copytree(FIXTURES / "paraphrase_diffuseq", folder)
    path = folder / f"seed{seed}.jsonl"
    path.write_text(edit(path.read_text()))
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda text: "\n".join(text.splitlines()[:3]) + "\n",
     "seed103.jsonl: 3 lines but .*seed101.jsonl has 4"),
    (lambda text: text.replace('"recover"', '"recovered"', 1), "seed103.jsonl:1: missing key"),
    (lambda text: text.replace("weight quickly", "weight slowly", 2), "seed103.jsonl:1: reference differs"),
])
def test_bad_sample_files_are_named(tmp_path, data_dir, edit, message):
    folder = broken_copy(tmp_path, 103, edit)
    with pytest.raises(ValueError, match=message):
        evaluate_system(make_config(), "para", "diffuseq", folder, data_dir, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_missing_seed_file_is_named(tmp_path, data_dir):
    with pytest.raises(DataError, match="seed999.jsonl"):
        evaluate_system(make_config(seeds=[101, 999]), "para", "diffuseq",
                        FIXTURES / "paraphrase_diffuseq", data_dir, tmp_path / "m.json")


AUTHORS = FIXTURES / "authors_layout"
E = math.exp(-0.25)           # BLEU of 4 words whose n-grams all match a 5-word reference
F = float(np.float32(2 * 0.8 / 1.8))    # ROUGE-L of 4 of 5 words in order, as float32


def test_authors_folder_gives_the_numbers_of_their_rules():
    """seed101, seed10, seed2 in their (lexicographic) order; seed2 has no line for source 2.

    Source 0: seed101 and seed10 say the reference (seed101 with two [PAD]s more), seed2 something
    else; source 1: the reference (5 words), its first 4 words, an empty output; source 2: 4 words
    of a reference that keeps a [PAD] word, twice.
    """
    result = evaluate_authors_folder(AUTHORS, BertScoreConfig(enabled=False))
    assert result["files"] == ["seed101_step50.json", "seed10_step50.json", "seed2_step50.json"]
    assert result["num_sources"] == 3
    per_file = {name: {k: q[k] for k in ("bleu", "rouge_l", "dist1", "len", "num_lines")}
                for name, q in result["per_file"].items()}
    assert per_file == {
        "seed101_step50.json": pytest.approx({"bleu": (2 + E) / 3, "rouge_l": (2 + F) / 3, "dist1": 1.0,
                                              "len": (10 + 7 + 6) / 3, "num_lines": 3}, rel=1e-15),
        "seed10_step50.json": pytest.approx({"bleu": (1 + 2 * E) / 3, "rouge_l": (1 + 2 * F) / 3, "dist1": 1.0,
                                             "len": (8 + 6 + 6) / 3, "num_lines": 3}, rel=1e-15),
        "seed2_step50.json": {"bleu": 0.0, "rouge_l": 0.0, "dist1": 0.5, "len": (7 + 2) / 2, "num_lines": 2}}
    assert result["per_file"]["seed2_step50.json"]["bertscore"] is None
    # MBR: source 0 ties seed101 and seed10 (the first in *their* order wins: Len 10, not 8),
    # source 1 picks seed10's 4 words (BLEU e^-1/4 against the 5) over seed101's 5 (0.2^(1/4)).
    mbr = result["mbr"]["3"]
    assert mbr["picks"] == [0, 1, 0]
    assert mbr["bleu"] == pytest.approx((1 + 2 * E) / 3, rel=1e-15)
    assert mbr["rouge_l"] == pytest.approx((1 + 2 * F) / 3, rel=1e-15)
    assert mbr["len"] == pytest.approx((10 + 6 + 6) / 3)
    # diversity over all candidates of each source (2 for source 2)
    assert result["diversity"] == pytest.approx({
        "k": 3, "self_bleu": (1 / 3 + 0.2**0.25 / 3 + 1) / 3, "div4": (5 / 8 + 2 / 3 + 1 / 2) / 3},
        rel=1e-12)
    assert result["table"]["quality_from"] == "mbr@3"
    assert result["table"]["bleu"] == mbr["bleu"] and result["table"]["div4"] == result["diversity"]["div4"]


def test_authors_folder_file_longer_than_the_first_is_named(tmp_path):
    folder = tmp_path / "samples"
    shutil.copytree(AUTHORS, folder)
    path = folder / "seed10_step50.json"
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"seed10_step50.json:4: more lines than seed101_step50.json \(3\)"):
        evaluate_authors_folder(folder, BertScoreConfig(enabled=False))
    with pytest.raises(ValueError, match="outside"):
        evaluate_authors_folder(AUTHORS, BertScoreConfig(enabled=False), out_path=AUTHORS / "m.json")


def test_evaluate_folder_command_prints_the_table_and_writes_the_json(tmp_path, capsys, repo_root):
    from pipeline.__main__ import main

    out = tmp_path / "metrics.json"
    args = ["evaluate-folder", "--folder", str(AUTHORS), "--params", str(repo_root / "params/tiny.yaml")]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["mbr"]["3"]["picks"] == [0, 1, 0] and written["bertscore_model"] == "builtin:minilm"
    assert 0 < written["table"]["bertscore"] <= 1
    assert written["per_file"]["seed2_step50.json"]["bertscore"] < written["table"]["bertscore"]
    assert "seed10_step50.json (3 lines): BLEU" in printed
    assert "| System | BLEU ↑ |" in printed
    assert f"| authors_layout | **{written['table']['bleu']:.4f}** |" in printed   # one row: all best


def test_a_line_missing_from_every_seed_file_is_an_error(tmp_path, data_dir):
    folder = tmp_path / "samples"
    shutil.copytree(FIXTURES / "paraphrase_diffuseq", folder)
    for seed in SEEDS:
        path = folder / f"seed{seed}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    with pytest.raises(DataError, match="3 lines, the test set sampled has 4"):
        evaluate_system(make_config(), "para", "diffuseq", folder, data_dir, tmp_path / "m.json")


def test_all_empty_candidates_are_flagged(tmp_path, data_dir, caplog):
    folder = tmp_path / "samples"
    shutil.copytree(FIXTURES / "paraphrase_diffuseq", folder)
    for seed in SEEDS:
        path = folder / f"seed{seed}.jsonl"
        rows = [{**json.loads(line), "recover": "[CLS] [SEP]"} for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = evaluate_system(make_config(), "para", "diffuseq", folder, data_dir, tmp_path / "m.json")
    assert result["degenerate"]["empty"] == 1.0 and result["degenerate"]["flags"] == ["empty"]
    assert result["degenerate"]["identical_across_seeds"] == 1.0
    assert "100 % of the candidates are empty" in caplog.text

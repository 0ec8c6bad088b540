"""The evaluate stage: one system's sample files -> its metrics JSON (docs/metrics.md).

Reads `seed<S>.jsonl` for the configured seeds (the authors' format: lines `{"source", "reference",
"recover"}`, line i of every file = test example i), applies MBR for every candidate-set size that
was sampled, computes the paper's quality columns on each MBR output (and on `best.jsonl`, a
deterministic decode, when present), the diversity columns over the first k seeds, step-wise
curves from `steps.jsonl`, and records what was used (BERTScore model, NLTK version, timings,
parameter hash, data checksum).

`evaluate_authors_folder` evaluates a folder written by the authors' own sampler as it is
(`seed<S>_step<C>.json` files), by the rules of their evaluation script.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nltk
import numpy as np

from pipeline import metrics
from pipeline.config import BertScoreConfig, Config
from pipeline.data.jsonl import DataError
from pipeline.decoding import mbr
from pipeline.degenerate import degenerate_rates, flags, warn
from pipeline.io import sha256_tree, write_json
from pipeline.provenance import data_checksum, params_hash
from pipeline.text import remove_special_strings

log = logging.getLogger(__name__)

SAMPLE_KEYS = ("source", "reference", "recover")
STEP_KEYS = ("seed", "index", "fraction", "recover")


@dataclass
class Samples:
    """One system's outputs on the test set. recovers[k][i]: seed k's text for source i, as written."""

    sources: list[str]
    references: list[str]          # cleaned of special strings
    recovers: list[list[str]]


def read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Lines of a jsonl file, each checked to hold `keys`; errors name the file and line."""
    if not path.is_file():
        raise DataError(f"{path}: sample file not found (run the sample stage)")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc})") from exc
            missing = [k for k in keys if k not in row]
            if missing:
                raise DataError(f"{path}:{number}: missing key(s) {missing}")
            rows.append(row)
    return rows


def load_samples(samples_dir: Path, seeds: list[int]) -> Samples:
    """Read and cross-check the per-seed files (same length, same references line by line)."""
    if not seeds:
        raise DataError("sampling.seeds is empty: there is nothing to evaluate")
    paths = [samples_dir / f"seed{seed}.jsonl" for seed in seeds]
    files = [read_jsonl(path, SAMPLE_KEYS) for path in paths]
    first = files[0]
    if not first:
        raise DataError(f"{paths[0]}: no samples (empty file)")
    for path, rows in zip(paths[1:], files[1:]):
        if len(rows) != len(first):
            raise DataError(f"{path}: {len(rows)} lines but {paths[0]} has {len(first)}")
        for number, (row, ref) in enumerate(zip(rows, first), start=1):
            if row["reference"] != ref["reference"]:
                raise DataError(f"{path}:{number}: reference differs from {paths[0]} line {number}")
    return Samples(sources=[r["source"] for r in first],
                   references=[remove_special_strings(r["reference"]) for r in first],
                   recovers=[[row["recover"] for row in rows] for rows in files])


def check_test_set_size(samples_dir: Path, samples: Samples, data_dir: Path,
                        num_sources: int | None) -> None:
    """Every seed file has one line per test example sampled (a line missing from every file
    would shift every later line onto the wrong reference)."""
    stats = json.loads((data_dir / "stats.json").read_text())
    test_count = stats["splits"]["test"]["count"]
    expected = test_count if num_sources is None else min(num_sources, test_count)
    if len(samples.sources) != expected:
        raise DataError(f"{samples_dir}: the seed files have {len(samples.sources)} lines, the "
                        f"test set sampled has {expected} (test split {test_count}, "
                        f"sampling.num_sources {num_sources}); rerun the sample stage")


def quality(raw_hyps: list[str], refs: list[str], bert: list[float] | None) -> dict[str, Any]:
    """The paper's quality columns (means over sentences) of one output per source.

    Args:
        raw_hyps: N hypotheses as written in the sample file (Len is counted on these).
        refs: N references.
        bert: N BERTScore F1 values, or None when BERTScore is disabled.
    """
    hyps = [remove_special_strings(h) for h in raw_hyps]
    return {
        "bleu": float(np.mean([metrics.sentence_bleu(r, h) for r, h in zip(refs, hyps)])),
        "rouge_l": float(np.mean([metrics.rouge_l(r, h) for r, h in zip(refs, hyps)])),
        "bertscore": float(np.mean(bert)) if bert is not None else None,
        "dist1": float(np.mean([metrics.dist1(h) for h in hyps])),
        "len": float(np.mean([metrics.authors_len(h) for h in raw_hyps])),
        "word_count": float(np.mean([metrics.word_count(h) for h in hyps])),
        "sacrebleu": metrics.corpus_sacrebleu(hyps, refs),
    }


def diversity(per_source: list[list[str]], k: int) -> dict[str, Any]:
    """self-BLEU and div-4 of each source's candidates (as written), then means over sources.

    Args:
        per_source: per_source[i] is the candidate list of source i, in seed (file) order.
        k: the candidate-set size that is recorded with the values.
    """
    cleaned = [[remove_special_strings(c) for c in cands] for cands in per_source]
    return {"k": k,
            "self_bleu": float(np.mean([metrics.self_bleu(c) for c in cleaned])),
            "div4": float(np.mean([metrics.div4(c) for c in cleaned]))}


def mbr_picks(samples: Samples, sizes: list[int], utility: str) -> dict[int, list[int]]:
    """MBR pick per source for each candidate-set size (the first n seeds).

    The utility matrix of the largest set is computed once per source; a smaller set's matrix is
    its top-left corner (each entry depends on its pair only).
    """
    largest = max(sizes)
    matrix_of = mbr.utility_matrix(utility)
    picks: dict[int, list[int]] = {n: [] for n in sizes}
    for i in range(len(samples.sources)):
        cands = [remove_special_strings(samples.recovers[s][i]) for s in range(largest)]
        scores = matrix_of(cands)
        for n in sizes:
            picks[n].append(mbr.select_from_matrix([row[:n] for row in scores[:n]]))
    return picks


def stepwise(path: Path, refs: list[str]) -> list[dict[str, float]]:
    """BLEU and div-4 of the decoded intermediate outputs at each recorded fraction of the steps."""
    by_fraction: dict[float, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for number, row in enumerate(read_jsonl(path, STEP_KEYS), start=1):
        if not 0 <= row["index"] < len(refs):
            raise DataError(f"{path}:{number}: index {row['index']} outside the test set "
                             f"(0..{len(refs) - 1})")
        by_fraction[float(row["fraction"])][row["index"]].append(remove_special_strings(row["recover"]))
    curve = []
    for fraction in sorted(by_fraction):
        per_source = by_fraction[fraction]
        bleu = [metrics.sentence_bleu(refs[i], h) for i, hyps in per_source.items() for h in hyps]
        curve.append({"fraction": fraction, "bleu": float(np.mean(bleu)),
                      "div4": float(np.mean([metrics.div4(h) for h in per_source.values()])),
                      "num_outputs": len(bleu)})
    return curve


def bertscore_by_output(outputs: dict[str, tuple[list[str], list[str]]], bs: BertScoreConfig,
                        device: str | None) -> dict[str, list[float] | None]:
    """BERTScore F1 of every output, each distinct (hypothesis, reference) pair scored once.

    Args:
        outputs: name -> (hypotheses as written, references).
        bs: the BERTScore settings; disabled gives None for every output.
        device: `cuda`, `cpu` or None/`auto`.
    """
    if not bs.enabled:
        return {name: None for name in outputs}
    pairs = sorted({(remove_special_strings(h), r)
                    for hyps, refs in outputs.values() for h, r in zip(hyps, refs)})
    f1 = metrics.bertscore_f1([h for h, _ in pairs], [r for _, r in pairs], model=bs.model,
                              num_layers=bs.num_layers, batch_size=bs.batch_size, device=device)
    score_of = dict(zip(pairs, f1))
    return {name: [score_of[(remove_special_strings(h), r)] for h, r in zip(hyps, refs)]
            for name, (hyps, refs) in outputs.items()}


def generation_info(samples_dir: Path) -> dict[str, Any]:
    """generation.json of the sample stage (copied through), or {} when there is none."""
    path = samples_dir / "generation.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def provenance(cfg: Config, task: str, system: str, samples_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Parameter hash, data checksum and sample-folder checksum behind these numbers."""
    stats = data_dir / "stats.json"
    if not stats.is_file():
        log.warning("%s missing: the data checksum is not recorded", stats)
    return {"params_hash": params_hash(cfg, task, system), "data_sha256": data_checksum(data_dir),
            "samples_sha256": sha256_tree(samples_dir)}


def table_row(result: dict[str, Any]) -> dict[str, Any]:
    """The table's columns: quality of best.jsonl if present, else of MBR at the largest size."""
    name = "best" if "best" in result else f"mbr@{max(map(int, result['mbr']))}"
    quality_block = result["best"] if name == "best" else result["mbr"][name.split("@")[1]]
    return {**{k: quality_block[k] for k in ("bleu", "rouge_l", "bertscore", "dist1", "len",
                                             "word_count", "sacrebleu")},
            "self_bleu": result["diversity"]["self_bleu"], "div4": result["diversity"]["div4"],
            "quality_from": name}


def evaluate_system(cfg: Config, task: str, system: str, samples_dir: Path, data_dir: Path,
                    out_path: Path) -> dict:
    """Evaluate one (task, system) and write its metrics JSON atomically.

    Args:
        cfg: the parameter file.
        task: task name (a key of cfg.tasks).
        system: system name (a key of cfg.systems).
        samples_dir: folder with seed<S>.jsonl, optionally best.jsonl, steps.jsonl, generation.json.
        data_dir: the task's prepared data (stats.json gives the data checksum).
        out_path: where the metrics JSON goes.

    Returns:
        The metrics dict that was written.
    """
    start = time.perf_counter()
    samples_dir, data_dir = Path(samples_dir), Path(data_dir)
    samples = load_samples(samples_dir, list(cfg.sampling.seeds))
    check_test_set_size(samples_dir, samples, data_dir, cfg.sampling.num_sources)
    result, timings = _metrics(cfg, task, system, samples, samples_dir)
    info = generation_info(samples_dir)
    result.update(generation=info, decode_method=info.get("decode_method"),
                  generation_seconds=info.get("wall_s"), pretrained=info.get("pretrained"),
                  paper_system=_paper_system(cfg.systems[system].paper_system, info),
                  paper_scale=bool(info.get("paper_scale")), is_floor=bool(info.get("is_floor")),
                  convergence=info.get("convergence", []))
    rates = degenerate_rates([list(row) for row in zip(*samples.recovers)], samples.sources)
    result["degenerate"] = {**rates, "flags": [] if result["is_floor"] else flags(rates)}
    if not result["is_floor"]:
        warn(f"{task}/{system}", rates)
    result["provenance"] = provenance(cfg, task, system, samples_dir, data_dir)
    result["timing"] = {**timings, "total_s": time.perf_counter() - start}
    write_json(Path(out_path), result)
    return result


def _paper_system(configured: str | None, info: dict[str, Any]) -> str | None:
    """The system's `paper_system:` ("" for none), else its family's default row."""
    return (info.get("paper_system") if configured is None else configured) or None


def _metrics(cfg: Config, task: str, system: str, samples: Samples,
             samples_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """MBR, quality, diversity and step-wise metrics, with the seconds each part took."""
    ev, num_seeds = cfg.evaluation, len(samples.recovers)
    k = min(ev.diversity_k, num_seeds)
    sizes = sorted({n for n in ev.mbr_sizes if n <= num_seeds})
    if not sizes:
        raise DataError(f"evaluation.mbr_sizes {ev.mbr_sizes}: none fits the {num_seeds} sampled seeds")
    tick = time.perf_counter()
    picks = mbr_picks(samples, sizes, ev.mbr_utility)
    timings = {"mbr_s": time.perf_counter() - tick}
    outputs = {str(n): [samples.recovers[k][i] for i, k in enumerate(picks[n])] for n in sizes}
    if (samples_dir / "best.jsonl").is_file():
        outputs["best"] = _best_outputs(samples_dir / "best.jsonl", samples)
    tick = time.perf_counter()
    bert = bertscore_by_output({name: (hyps, samples.references) for name, hyps in outputs.items()},
                               ev.bertscore, cfg.compute.device)
    timings["bertscore_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    refs, sys_cfg = samples.references, cfg.systems[system]
    result: dict[str, Any] = {
        "task": task, "system": system, "family": sys_cfg.family, "label": sys_cfg.label or system,
        "num_sources": len(refs), "seeds": list(cfg.sampling.seeds), "mbr_sizes": sizes,
        "mbr_sizes_skipped": sorted(n for n in ev.mbr_sizes if n > num_seeds),
        "mbr_utility": ev.mbr_utility,
        "mbr": {str(n): {**quality(outputs[str(n)], refs, bert[str(n)]), "picks": picks[n]}
                for n in sizes},
        "diversity": diversity([list(cands) for cands in zip(*samples.recovers[:k])], k),
        "bertscore_model": ev.bertscore.model if ev.bertscore.enabled else None,
        "nltk_version": nltk.__version__,
    }
    if "best" in outputs:
        result["best"] = quality(outputs["best"], refs, bert["best"])
    if (samples_dir / "steps.jsonl").is_file():
        result["stepwise"] = stepwise(samples_dir / "steps.jsonl", refs)
    result["table"] = table_row(result)
    timings["metrics_s"] = time.perf_counter() - tick
    return result, timings


def _best_outputs(path: Path, samples: Samples) -> list[str]:
    """The deterministic decode's texts, checked against the seed files line by line."""
    rows = read_jsonl(path, SAMPLE_KEYS)
    if len(rows) != len(samples.sources):
        raise DataError(f"{path}: {len(rows)} lines but the seed files have {len(samples.sources)}")
    for number, (row, ref) in enumerate(zip(rows, samples.references), start=1):
        if remove_special_strings(row["reference"]) != ref:
            raise DataError(f"{path}:{number}: reference differs from the seed files' line {number}")
    return [row["recover"] for row in rows]


# --- a sample folder of the authors' sampler, evaluated as their script evaluates it ------------

# The marker strings the authors' evaluation deletes from each field after stripping it; the
# reference keeps "[PAD]" and the spaces around deleted markers stay (Len counts them).
AUTHORS_DELETED = {"reference": ("[SEP]", "[CLS]"), "recover": ("[SEP]", "[CLS]", "[PAD]")}


def authors_clean(text: str, field: str) -> str:
    """A field of a sample line as the authors' evaluation scores it: stripped, then its markers
    deleted (`AUTHORS_DELETED`)."""
    text = text.strip()
    for token in AUTHORS_DELETED[field]:
        text = text.replace(token, "")
    return text


@dataclass
class AuthorsFolder:
    """The files of an authors' sample folder, in the order their evaluation reads them.

    references[f][i] (cleaned) and recovers[f][i] (as written) are line i of file names[f]; a file
    may be shorter than the first one (its missing sources have one candidate fewer).
    """

    names: list[str]
    references: list[list[str]]
    recovers: list[list[str]]

    def candidates(self, i: int) -> list[int]:
        """Indices of the files that have a line for source i, in file order."""
        return [f for f, rows in enumerate(self.recovers) if i < len(rows)]


def read_authors_folder(folder: Path) -> AuthorsFolder:
    """Read every `*json` file of `folder` in lexicographic order (their `sorted(glob(...))`).

    The first file fixes the sources; a longer file would crash their script, so it is an error
    naming the file and its first extra line.
    """
    names = sorted(p.name for p in Path(folder).iterdir()
                   if p.name.endswith("json") and not p.name.startswith(".") and p.is_file())
    if not names:
        raise DataError(f"{folder}: no *json sample files (the authors' sampler writes "
                                "seed<S>_step<C>.json)")
    files = [read_jsonl(Path(folder) / name, SAMPLE_KEYS) for name in names]
    if not files[0]:
        raise DataError(f"{Path(folder) / names[0]}: no samples (empty file)")
    for name, rows in zip(names[1:], files[1:]):
        if len(rows) > len(files[0]):
            raise DataError(f"{Path(folder) / name}:{len(files[0]) + 1}: more lines than "
                             f"{names[0]} ({len(files[0])}), the first file, which fixes the sources")
    return AuthorsFolder(names=names,
                         references=[[authors_clean(r["reference"], "reference") for r in rows]
                                     for rows in files],
                         recovers=[[r["recover"] for r in rows] for rows in files])


def evaluate_authors_folder(folder: Path, bertscore: BertScoreConfig, device: str | None = None,
                            out_path: Path | None = None) -> dict[str, Any]:
    """Evaluate an authors' sample folder as it is, by the rules of their evaluation script.

    Per file: the quality columns against the file's own references (their loop over files).
    Over all files, per source: the MBR pick with BLEU, scored against the first file's
    reference (their `--mbr`), and self-BLEU / div-4 of all candidates (their run without
    `--mbr`). The table block takes the MBR quality and that diversity.

    Args:
        folder: the folder of `seed<S>_step<C>.json` files.
        bertscore: the BERTScore settings (disabled: no BERTScore column).
        device: device of BERTScore (`cuda`, `cpu`, None/`auto`).
        out_path: where to write the metrics JSON atomically (None: not written).

    Returns:
        The metrics: files (their order), per_file, mbr {K: quality and picks (file indices)},
        diversity, table, as `evaluate_system` names them.
    """
    if out_path is not None and Path(out_path).resolve().parent == Path(folder).resolve():
        raise DataError(f"{out_path}: write the metrics outside {folder} (the authors' evaluation "
                         "reads every *json file there as samples)")
    data = read_authors_folder(Path(folder))
    present = [data.candidates(i) for i in range(len(data.recovers[0]))]
    picks = [files[mbr.select_one([authors_clean(data.recovers[f][i], "recover") for f in files])]
             for i, files in enumerate(present)]
    # keyed by file name, plus "MBR" (a file name ends in "json", so it cannot collide)
    outputs = {name: (hyps, refs) for name, hyps, refs in zip(data.names, data.recovers, data.references)}
    outputs["MBR"] = ([data.recovers[f][i] for i, f in enumerate(picks)], data.references[0])
    bert = bertscore_by_output(outputs, bertscore, device)
    size = str(len(data.names))
    result: dict[str, Any] = {
        "folder": str(folder), "system": Path(folder).name, "files": data.names,
        "num_sources": len(present),
        "per_file": {name: {**quality(*outputs[name], bert[name]), "num_lines": len(outputs[name][0])}
                     for name in data.names},
        "mbr_sizes": [int(size)], "mbr_utility": "bleu",
        "mbr": {size: {**quality(*outputs["MBR"], bert["MBR"]), "picks": picks}},
        "diversity": diversity([[data.recovers[f][i] for f in files] for i, files in enumerate(present)],
                               len(data.names)),
        "bertscore_model": bertscore.model if bertscore.enabled else None,
        "nltk_version": nltk.__version__,
    }
    result["table"] = table_row(result)
    if out_path is not None:
        write_json(Path(out_path), result)
    return result


def folder_lines(result: dict[str, Any]) -> list[str]:
    """The lines printed for an authors' folder before its table block: one per file, in order."""
    lines = [f"{result['folder']}: {result['num_sources']} sources, files in the authors' order:"]
    for name, q in result["per_file"].items():
        bert = "n/a" if q["bertscore"] is None else f"{q['bertscore']:.4f}"
        lines.append(f"  {name} ({q['num_lines']} lines): BLEU {q['bleu']:.4f}, ROUGE-L "
                     f"{q['rouge_l']:.4f}, BERTScore {bert}, dist-1 {q['dist1']:.4f}, Len {q['len']:.2f}")
    return lines + ["", f"MBR over {len(result['files'])} files, diversity over all files:", ""]

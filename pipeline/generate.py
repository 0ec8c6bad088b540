"""The sample stage: a candidate set for every test source, one output file per seed.

Outputs (`results/<task>/<system>/samples/`, written atomically as one folder):
    seed<S>.jsonl    {"source", "reference", "recover"} per line; line i is test example i
    generation.json  family, decode settings, seeds, sizes, device and timings
    steps.jsonl      {"seed", "index", "fraction", "recover"}: intermediate outputs along the
                     generation, when the decode config asks the model for them
    best.jsonl       the deterministic quality decode (beam search of the AR baselines), when the
                     family has one (`Family.quality_decode`)

Every text goes through `pipeline.text`: model ids become `output_text` (the task tokenizer's plain
decode, or another tokenizer's decode normalised with the task's); sources and references are the
prepared test texts after the task tokenizer's round trip (docs/metrics.md), so every system is
scored against identical references.
Models see only the sources: batches are collated with empty targets, so no reference can leak
into a candidate. Candidate (i, s) depends only on the checkpoint, the seed s and the index i
(`pipeline.models.base.candidate_generator`), not on how sources are batched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import Config
from pipeline.degenerate import degenerate_rates, warn
from pipeline.io import atomic_dir, write_json
from pipeline.models.base import Family, Seq2Seq
from pipeline.types import GenerationOutput, Pair

LOG = logging.getLogger(__name__)
NO_TARGET = np.empty(0, dtype=np.int64)


def generate_candidates(model: Seq2Seq, pairs: Sequence[Pair], seeds: list[int], decode: Any,
                        batch_size: int, device: Any = "cpu", *,
                        progress: bool = True) -> GenerationOutput:
    """Generate every seed's candidate for every source, `batch_size` sources per model call.

    Args:
        model: a trained model (eval mode).
        pairs: test (source ids, target ids) pairs; only the sources are used; pair i has
            source index i.
        seeds: the candidate seeds (each call generates all of them).
        decode: the family's DecodeConfig.
        device: where the model's batches go.

    Returns:
        ids[i][k]: word-piece ids for source i and seed k; trace[f][i][k] likewise.
    """
    ids: list[list[list[int]]] = []
    trace: dict[float, list[list[list[int]]]] = {}
    for start in tqdm(range(0, len(pairs), batch_size), desc="sample", disable=not progress):
        sources = [src for src, _ in pairs[start:start + batch_size]]
        batch = model.collate([(src, NO_TARGET) for src in sources])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with torch.no_grad():
            out = model.generate(batch, seeds=list(seeds), decode=decode,
                                 source_indices=list(range(start, start + len(sources))))
        ids.extend(out.ids)
        for fraction, rows in out.trace.items():
            trace.setdefault(fraction, []).extend(rows)
    return GenerationOutput(ids=ids, trace=trace)


def text_writer(model: Seq2Seq, task_tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """ids -> the written text (`pipeline.text.output_text`) for the model's vocabulary."""
    from pipeline.text import output_text

    if model.output_tokenizer_dir() is None:
        return lambda ids: output_text(task_tokenizer, ids)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.output_tokenizer_dir())
    return lambda ids: output_text(tokenizer, ids, task_tokenizer)


def _load_model(family: Family, model_cfg: Any, model_dir: Path | None, data_dir: Path,
                device: str) -> Seq2Seq:
    """The trained model of a family that trains; otherwise the family's model-free row, given
    the training pairs it may draw from."""
    from pipeline.data.dataset import load_split, load_task_info
    from pipeline.models.registry import load_model

    if family.trains:
        if model_dir is None:
            raise ValueError(f"family '{family.name}' trains: the sample stage needs its model")
        return load_model(model_dir, device)
    model = family.build(model_cfg, load_task_info(data_dir)).to(device).eval()
    model.use_training_data(load_split(data_dir, "train"))
    return model


def _convergence(model_dir: Path) -> list[dict[str, float]]:
    """The training's convergence record (validation BLEU of a cheap decode per step), if any."""
    from pipeline.checkpoint import read_model_config

    return read_model_config(model_dir)["provenance"].get("convergence", [])


def sample_system(cfg: Config, task: str, system: str, model_dir: Path | None, data_dir: Path,
                  out_dir: Path) -> None:
    """The sample stage of one (task, system): writes the folder described in the module docstring.

    Args:
        model_dir: the trained model folder (None for the model-free families).
        data_dir: the task's prepared data (data/processed/<task>).
        out_dir: the samples folder to (re)place.
    """
    from pipeline.data.dataset import load_split, load_tokenizer, read_texts
    from pipeline.models.registry import get_family, system_configs
    from pipeline.text import normalize

    sys_cfg = cfg.systems[system]
    family = get_family(sys_cfg.family)
    model_cfg, decode = system_configs(sys_cfg, f"systems.{system}")
    torch.set_num_threads(cfg.compute.threads)
    task_tokenizer = load_tokenizer(data_dir)
    test = read_texts(data_dir, "test")
    num = len(test) if cfg.sampling.num_sources is None else min(cfg.sampling.num_sources, len(test))
    sources = [normalize(task_tokenizer, pair["src"]) for pair in test[:num]]
    references = [normalize(task_tokenizer, pair["trg"]) for pair in test[:num]]
    pairs = load_split(data_dir, "test")[:num]
    device = distributed.resolve_device(cfg.compute.device) if family.trains else "cpu"
    model = _load_model(family, model_cfg, model_dir, data_dir, device)
    to_text = text_writer(model, task_tokenizer)
    seeds, batch_size = list(cfg.sampling.seeds), cfg.sampling.batch_size
    started = time.perf_counter()
    out = generate_candidates(model, pairs, seeds, decode, batch_size, device)
    info: dict[str, Any] = {
        "family": family.name, "decode": dataclasses.asdict(decode), "device": device,
        "wall_s": time.perf_counter() - started, "pretrained": model.is_pretrained(),
        "checkpoint": str(model_dir) if family.trains else None,
        "decode_method": family.describe(decode), "paper_system": family.paper_system,
        "paper_scale": family.matches_paper(model_cfg), "is_floor": family.is_floor,
        "convergence": _convergence(model_dir) if family.trains else []}
    texts: dict[str, Any] = {
        "candidates": [[to_text(c) for c in row] for row in out.ids],
        "trace": {f: [[to_text(c) for c in row] for row in rows] for f, rows in out.trace.items()}}
    quality = family.quality_decode(decode)
    if quality is not None:
        started = time.perf_counter()
        best = generate_candidates(model, pairs, [0], quality, batch_size, device)
        texts["best"] = [to_text(row[0]) for row in best.ids]
        info.update(best_decode=dataclasses.asdict(quality), best_wall_s=time.perf_counter() - started)
    info.update(seeds=seeds, num_sources=num, wall_s_per_seed=info["wall_s"] / len(seeds),
                sequences_per_s=num * len(seeds) / max(info["wall_s"], 1e-9))
    if not family.is_floor:
        warn(f"{task}/{system}", degenerate_rates(texts["candidates"], sources))
    write_samples(out_dir, sources, references, seeds, texts, info)
    LOG.info("%s/%s: %d sources x %d seeds in %.1f s -> %s", task, system, num, len(seeds),
             info["wall_s"], out_dir)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def write_samples(out_dir: Path, sources: list[str], references: list[str], seeds: list[int],
                  texts: dict[str, Any], generation: dict[str, Any]) -> None:
    """Write the samples folder atomically.

    Args:
        texts: "candidates" [i][k] (source i, seed k), "trace" {fraction: [i][k]}, optional
            "best" [i].
        generation: the content of generation.json.
    """
    def lines(recover: list[str]) -> list[dict[str, str]]:
        return [{"source": s, "reference": r, "recover": c}
                for s, r, c in zip(sources, references, recover, strict=True)]

    with atomic_dir(Path(out_dir)) as tmp:
        for k, seed in enumerate(seeds):
            _write_jsonl(tmp / f"seed{seed}.jsonl", lines([row[k] for row in texts["candidates"]]))
        if "best" in texts:
            _write_jsonl(tmp / "best.jsonl", lines(texts["best"]))
        if texts["trace"]:
            _write_jsonl(tmp / "steps.jsonl", [
                {"seed": seed, "index": i, "fraction": f, "recover": rows[i][k]}
                for k, seed in enumerate(seeds) for i in range(len(sources))
                for f, rows in sorted(texts["trace"].items())])
        write_json(tmp / "generation.json", generation)

"""The sweep stage: what sampling quality costs for a trained diffusion system, i.e. BLEU of one
candidate and of the MBR pick, and the wall time, for each (sampler, steps) point of a grid.

Each point decodes the first `num_sources` test sources with every seed in one batched run (the
fast samplers' way of producing a candidate set); a point may ask for fewer sources (2000-step
DDPM on a subset). Texts are the sample stage's (`pipeline.quick_eval`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.io import write_json
from pipeline.models.base import Seq2Seq
from pipeline.quick_eval import (EvalSet, generate_texts, load_eval_set, mbr_bleu,
                                 single_candidate_bleu)


def expand_grid(grid: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grid entries with a list of `steps` become one point per value, in order."""
    points = []
    for entry in grid:
        steps = entry.get("steps")
        for value in steps if isinstance(steps, list) else [steps]:
            points.append({**entry, "steps": value} if value is not None else dict(entry))
    return points


def sampler_sweep(model: Seq2Seq, data: EvalSet, base_decode: Any, grid: Sequence[dict[str, Any]],
                  seeds: list[int], batch_size: int, mbr_size: int = 10) -> list[dict[str, Any]]:
    """BLEU and cost per point of `grid` for one model.

    Args:
        base_decode: the family's DecodeConfig.
        grid: points, each the DecodeConfig fields it changes, e.g. {"sampler": "ddim",
            "steps": 20, "eta": 1.0}, optionally with "num_sources" (fewer test sources).
        seeds: the candidate seeds (all generated in one batched run per point).
        mbr_size: MBR over the first `mbr_size` seeds' candidates (skipped with fewer seeds).

    Returns:
        One record per point: its fields, bleu_single, bleu_mbr (None with fewer seeds than
        mbr_size), mbr_size, wall_s and cpu_s (all candidates), num_sources, seeds.
    """
    records = []
    for point in grid:
        settings = {k: v for k, v in point.items() if k != "num_sources"}
        subset = EvalSet(data.pairs[:point.get("num_sources")],
                         data.references[:point.get("num_sources")], data.tokenizer)
        decode = dataclasses.replace(base_decode, **settings)
        candidates, cost = generate_texts(model, subset, seeds, decode, batch_size)
        mbr_score = (mbr_bleu([row[:mbr_size] for row in candidates], subset.references)
                     if len(seeds) >= mbr_size else None)
        records.append({**settings, "bleu_single": single_candidate_bleu(candidates, subset.references),
                        "bleu_mbr": mbr_score, "mbr_size": mbr_size, **cost,
                        "num_sources": len(subset.pairs), "seeds": list(seeds)})
    return records


def run_sweep(model: Seq2Seq, decode: Any, data_dir: Path, grid: Sequence[dict[str, Any]],
              num_sources: int, seeds: list[int], batch_size: int, mbr_size: int,
              out_path: Path) -> list[dict[str, Any]]:
    """The sweep stage of one (task, system): writes the records as JSON (`dvc plots` data).

    Args:
        decode: the system's DecodeConfig (the grid changes some of its fields; step traces off).
        num_sources: test sources decoded per point (a point's own `num_sources` may lower it).
    """
    data = load_eval_set(data_dir, "test", num_sources)
    base = dataclasses.replace(decode, record_fractions=[])
    records = sampler_sweep(model, data, base, expand_grid(grid), seeds, batch_size, mbr_size)
    write_json(out_path, records)
    return records

"""What the MLflow parent run of a (task, system) cell carries, built from the cell's files: the
table row's numbers, key parameters, the prepared data as a dataset input, a samples table, and
the saved run-list view that shows them as the table (`pipeline.tracking` logs them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import Config

NUM_SAMPLE_ROWS = 10       # test sources shown in a cell's samples table
NUM_SAMPLE_CANDIDATES = 3  # candidates (seeds) shown beside the chosen output
SAMPLES_TABLE = "samples.json"  # one name on every parent: Compare shows them side by side
# The run list as the table: `#/experiments/<id>/runs?viewStateShareKey=table` in `mlflow ui`.
TABLE_VIEW = "table"
TABLE_VIEW_PARAMS = ("family", "num_parameters", "train_steps", "decode_method")


def table_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The table row's numbers (metrics.json "table"; BERTScore is None when disabled)."""
    return {k: float(v) for k, v in metrics["table"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def cell_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The table row's numbers, the largest MBR size and the diversity k."""
    return {**table_numbers(metrics), "mbr_size": float(max(metrics["mbr_sizes"])),
            "diversity_k": float(metrics["diversity"]["k"])}


def cell_params(cfg: Config, system: str, metrics: dict[str, Any],
                model_dir: Path) -> dict[str, Any]:
    """Key parameters of a cell: family, model size, training steps, decoding, selection."""
    sys_cfg = cfg.systems[system]
    params: dict[str, Any] = {"family": sys_cfg.family, "label": sys_cfg.label or system,
                              "decode_method": metrics.get("decode_method"),
                              "quality_from": metrics["table"]["quality_from"],
                              "mbr_sizes": _listed(metrics["mbr_sizes"]),
                              "seeds": _listed(metrics["seeds"])}
    steps = (metrics.get("generation") or {}).get("decode", {}).get("steps")
    if steps is not None:
        params["decode_steps"] = steps
    if (model_dir / "config.json").is_file():
        model = json.loads((model_dir / "config.json").read_text())
        params.update(num_parameters=model["provenance"].get("num_parameters"),
                      train_steps=model.get("step"))
    return {k: v for k, v in params.items() if v is not None}


def _listed(values: list[Any]) -> str:
    return ", ".join(map(str, values))


def table_view(metric_keys: list[str]) -> str:
    """A view of the run list in the state format of the MLflow UI's Share button: parent runs
    only, with the table's metrics and key parameters as columns, best BLEU first."""
    columns = ["attributes.`Dataset`", *(f"metrics.`{k}`" for k in metric_keys),
               *(f"params.`{k}`" for k in TABLE_VIEW_PARAMS)]
    return json.dumps({"searchFilter": "tags.`pipeline.role` = 'cell'",
                       "orderByKey": "metrics.`bleu`", "orderByAsc": False,
                       "selectedColumns": columns})


def dataset_input(cfg: Config, task: str, data_dir: Path) -> Any:
    """The task's prepared data as an MLflow dataset input; its digest is the data checksum
    (MLflow keeps 36 characters; the profile holds all of it)."""
    from mlflow.entities import Dataset, DatasetInput

    stats = json.loads((data_dir / "stats.json").read_text())
    source = cfg.tasks[task].source
    profile = {"sha256": stats["raw_sha256"], "source": f"{source.kind}:{source.uri}",
               **{k: stats[k] for k in ("splits", "vocab_size", "seq_len") if k in stats}}
    schema = {"mlflow_colspec": [{"name": "src", "type": "string"},
                                 {"name": "trg", "type": "string"}]}
    return DatasetInput(Dataset(name=task, digest=stats["raw_sha256"][:36], source_type="local",
                                source=json.dumps({"uri": str(data_dir.resolve())}),
                                schema=json.dumps(schema), profile=json.dumps(profile)))


def samples_table(samples_dir: Path, metrics: dict[str, Any]) -> dict[str, list[str]]:
    """The first test sources with reference, the chosen output (the table's) and a few candidates.

    Returns:
        column -> NUM_SAMPLE_ROWS values: source, reference, chosen, chosen_from, seed<S>...
    """
    def rows(name: str) -> list[dict[str, str]]:
        with open(samples_dir / name, encoding="utf-8") as handle:
            return [json.loads(line) for line, _ in zip(handle, range(NUM_SAMPLE_ROWS))]

    seeds = metrics["seeds"]
    candidates = {seed: rows(f"seed{seed}.jsonl") for seed in seeds}
    first = candidates[seeds[0]]
    quality_from = metrics["table"]["quality_from"]
    if quality_from == "best":
        chosen = [row["recover"] for row in rows("best.jsonl")]
        chosen_from = ["best decode"] * len(first)
    else:
        picks = metrics["mbr"][quality_from.split("@")[1]]["picks"][:len(first)]
        chosen = [candidates[seeds[k]][i]["recover"] for i, k in enumerate(picks)]
        chosen_from = [f"MBR: seed{seeds[k]}" for k in picks]
    table = {"source": [r["source"] for r in first], "reference": [r["reference"] for r in first],
             "chosen": chosen, "chosen_from": chosen_from}
    for seed in seeds[:NUM_SAMPLE_CANDIDATES]:
        table[f"seed{seed}"] = [row["recover"] for row in candidates[seed]]
    return table

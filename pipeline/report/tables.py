"""results/tables.md: one table per task in the layout of the paper's Table 1, beside its numbers.

Built only from the metrics JSONs of the evaluate stage. Each cell shows our value and, when the
task and the system map to a row of the paper (`paper_table1.tsv`, the project's copy of Table 1),
the paper's value in parentheses. The best value of each column is bold, the two floor rows
(copy source, random target) excluded; they are shown last.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.io import atomic_file, write_json
from pipeline.report import plots
from pipeline.stages import STAGES

PAPER_TABLE = Path(__file__).with_name("paper_table1.tsv")
FLOOR_FAMILIES = ("copy_source", "random_target")

# family -> the paper row it reproduces. GPT-2 has two rows; the size in the system's label picks one.
# DiffuSeq-v2 (the follow-up paper) has no row in this paper's Table 1.
PAPER_SYSTEMS: dict[str, Callable[[str], str | None]] = {
    "diffuseq": lambda label: None if "v2" in label.lower() else "DiffuSeq",
    "gru_attention": lambda label: "GRU-attention",
    "transformer": lambda label: "Transformer-base",
    "gpt2": lambda label: "GPT2-large FT" if "large" in label.lower() else "GPT2-base FT",
    "gpvae": lambda label: "GPVAE-T5",
    "levt": lambda label: "NAR-LevT",
}
# Paper rows that fine-tune a pretrained model: ours is marked when it was trained from scratch.
PAPER_FINETUNED = ("GPT2-base FT", "GPT2-large FT", "GPVAE-T5")

# (header, metric keys, direction: +1 higher is better, -1 lower is better, 0 no best)
COLUMNS: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = [
    ("BLEU ↑", ("bleu",), (1,)),
    ("ROUGE-L ↑", ("rouge_l",), (1,)),
    ("BERTScore ↑", ("bertscore",), (1,)),
    ("dist-1 ↑", ("dist1",), (1,)),
    ("self-BLEU ↓ / div-4 ↑", ("self_bleu", "div4"), (-1, 1)),
    ("Len", ("len",), (0,)),
    ("sacreBLEU (extra, corpus, 0-100)", ("sacrebleu",), (1,)),
]
FORMATS = {"len": "{:.2f}", "sacrebleu": "{:.2f}"}


def paper_system(family: str, label: str) -> str | None:
    """The paper's Table 1 row that a system of this family and label stands for (None: none)."""
    rule = PAPER_SYSTEMS.get(family)
    return rule(label) if rule else None


def load_paper_table(path: Path = PAPER_TABLE) -> dict[tuple[str, str], dict[str, float]]:
    """(paper task, paper system) -> the paper's numbers by metric key."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {(r.pop("task"), r.pop("system")): {k: float(v) for k, v in r.items()} for r in rows}


def load_metrics(cfg: Config) -> dict[str, list[dict[str, Any]]]:
    """task -> the metrics JSONs of its systems (floors last); a missing file is an error."""
    by_task: dict[str, list[dict[str, Any]]] = {task: [] for task in cfg.tasks}
    for task, system in cfg.system_cells():
        path = STAGES["evaluate"].outputs(task=task, system=system)["metrics"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: metrics of ({task}, {system}) missing; run "
                                    f"`python -m pipeline evaluate --task {task} --system {system}`")
        by_task[task].append(json.loads(path.read_text()))
    for rows in by_task.values():
        rows.sort(key=lambda m: m.get("family") in FLOOR_FAMILIES)      # stable: file order kept
    return by_task


def _fmt(key: str, value: float | None) -> str:
    return "–" if value is None else FORMATS.get(key, "{:.4f}").format(value)


def _best(rows: list[dict[str, Any]], key: str, direction: int) -> float | None:
    values = [r["table"].get(key) for r in rows if r.get("family") not in FLOOR_FAMILIES]
    values = [v for v in values if v is not None]
    if not values or direction == 0:
        return None
    return max(values) if direction > 0 else min(values)


def _row_label(m: dict[str, Any]) -> str:
    label = m.get("label") or m["system"]
    if m.get("family") in FLOOR_FAMILIES and "floor" not in label.lower():
        label += " (floor)"
    return label + (" †" if is_from_scratch(m) else "")


def is_from_scratch(m: dict[str, Any]) -> bool:
    """A system trained from scratch whose paper row fine-tunes a pretrained model."""
    paper = paper_system(m.get("family", ""), m.get("label") or m["system"])
    return m.get("pretrained") is False and paper in PAPER_FINETUNED


def render_table(rows: list[dict[str, Any]], paper: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines of one task's table.

    Args:
        rows: the task's metrics JSONs, floors last.
        paper: system name -> the paper's numbers for this task ({} when not a paper task).
    """
    lines = ["| System | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    best = {key: _best(rows, key, d) for _, keys, dirs in COLUMNS for key, d in zip(keys, dirs)}
    for m in rows:
        ref = paper.get(m["system"], {})
        cells = []
        for _, keys, _dirs in COLUMNS:
            ours = []
            for key in keys:
                value, text = m["table"].get(key), _fmt(key, m["table"].get(key))
                is_best = value is not None and value == best[key] and m.get("family") not in FLOOR_FAMILIES
                ours.append(f"**{text}**" if is_best else text)
            cell = " / ".join(ours)
            if all(key in ref for key in keys):
                cell += " (paper " + " / ".join(_fmt(k, ref[k]) for k in keys) + ")"
            cells.append(cell)
        lines.append(f"| {_row_label(m)} | " + " | ".join(cells) + " |")
    return lines


def paper_rows(cfg: Config, task: str, rows: list[dict[str, Any]],
               table: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """system name -> the paper's numbers of its row, for a task that names a paper task."""
    paper_task = cfg.tasks[task].paper_task
    out = {}
    for m in rows:
        name = paper_system(m.get("family", ""), m.get("label") or m["system"])
        if paper_task and name and (paper_task, name) in table:
            out[m["system"]] = table[(paper_task, name)]
    return out


def run_description(cfg: Config, task: str, rows: list[dict[str, Any]]) -> list[str]:
    """What was run for one table: scale, seeds, candidate sizes, models, data, decoding."""
    ev, first = cfg.evaluation, rows[0] if rows else {}
    checksum = (first.get("provenance") or {}).get("data_sha256")
    decoding = "; ".join(f"{_row_label(m)}: {m.get('decode_method') or 'n/a'}, quality from "
                         f"{m['table'].get('quality_from', 'n/a')}" for m in rows)
    used = sorted({n for m in rows for n in m.get("mbr_sizes", [])})
    lines = [f"Run: scale `{cfg.scale}`; seeds {list(cfg.sampling.seeds)}; MBR candidate sizes "
             f"{used} (asked: {sorted(ev.mbr_sizes)}) with utility `{ev.mbr_utility}`; diversity over k = "
             f"{ev.diversity_k} seeds; BERTScore model `{first.get('bertscore_model')}`; "
             f"NLTK {first.get('nltk_version')}; data sha256 `{(checksum or 'n/a')[:16]}`.",
             "", f"Decoding: {decoding}."]
    if any(is_from_scratch(m) for m in rows):
        lines += ["", "† trained from scratch here; the paper fine-tunes a pretrained model."]
    return lines


def render_report(cfg: Config, by_task: dict[str, list[dict[str, Any]]]) -> str:
    """The whole tables.md text."""
    table = load_paper_table()
    parts = ["# Results", "",
             "Columns as in the paper's Table 1 (spec/metrics.md). Values in parentheses: the "
             "paper's, where the task and system map to one of its rows. Bold: best per column, "
             "floor rows excluded. Figures: `figures/`.", ""]
    for task, rows in by_task.items():
        title = cfg.tasks[task].label or task
        paper_task = cfg.tasks[task].paper_task
        parts += [f"## {title}" + (f" (paper task: {paper_task})" if paper_task else ""), ""]
        parts += render_table(rows, paper_rows(cfg, task, rows, table)) if rows else ["(no systems)"]
        parts += [""] + run_description(cfg, task, rows) + [""]
    return "\n".join(parts)


def mbr_curve_records(by_task: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """BLEU of the MBR output per candidate-set size, one record per (task, system, size): the
    data of `dvc plots show` (the same numbers as bleu_vs_candidates.png)."""
    return [{"task": task, "system": m["system"], "size": int(size), "bleu": q["bleu"]}
            for task, rows in by_task.items() for m in rows
            for size, q in sorted(m.get("mbr", {}).items(), key=lambda item: int(item[0]))]


def write_report(cfg: Config, tables_path: Path, figures_dir: Path,
                 curves_path: Path | None = None) -> None:
    """Write results/tables.md, the figures and the plot data, each atomically, from the metrics.

    Args:
        cfg: the parameter file (which (task, system) cells to show, and the run settings).
        tables_path: the markdown file to write.
        figures_dir: the folder of PNG figures (replaced as a whole).
        curves_path: JSON records of BLEU vs candidate-set size (for `dvc plots`), if wanted.
    """
    by_task = load_metrics(cfg)
    plots.write_figures(by_task, Path(figures_dir))
    if curves_path is not None:
        write_json(Path(curves_path), mbr_curve_records(by_task))
    with atomic_file(Path(tables_path)) as handle:
        handle.write(render_report(cfg, by_task))

"""results/tables.md: one table per task in the layout of the paper's Table 1, beside its numbers.

Built only from the metrics JSONs of the evaluate stage. Each cell shows our value and, when the
task and the system map to a row of the paper (the task's `paper_task`, the system's
`paper_system` recorded in its metrics; `paper_table1.tsv` is the project's copy of Table 1), the
paper's value in parentheses. The best value of each column is bold, the floor rows (copy
source, random target) excluded; they are shown last.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.io import atomic_file, write_json
from pipeline.report import plots

PAPER_TABLE = Path(__file__).with_name("paper_table1.tsv")
# Paper rows that fine-tune a pretrained model: ours is marked when it was trained from scratch.
PAPER_FINETUNED = ("GPT2-base FT", "GPT2-large FT", "GPVAE-T5")
# How the paper measured (docs/metrics.md): a value measured otherwise gets no paper value beside it.
PAPER_BERTSCORE = "microsoft/deberta-xlarge-mnli"
PAPER_MBR_SIZE, PAPER_DIVERSITY_K = 10, 3
QUALITY_KEYS = ("bleu", "rouge_l", "dist1", "len")

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


def load_paper_table(path: Path = PAPER_TABLE) -> dict[tuple[str, str], dict[str, float]]:
    """(paper task, paper system) -> the paper's numbers by metric key."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {(r.pop("task"), r.pop("system")): {k: float(v) for k, v in r.items()} for r in rows}


def load_metrics(cfg: Config, paths: dict[tuple[str, str], Path]) -> dict[str, list[dict[str, Any]]]:
    """task -> the metrics JSONs of its systems (floors last); a missing file is an error.

    Args:
        paths: (task, system) -> its metrics JSON, for every cell of the parameter file.
    """
    by_task: dict[str, list[dict[str, Any]]] = {task: [] for task in cfg.tasks}
    for task, system in cfg.system_cells():
        path = Path(paths[(task, system)])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: metrics of ({task}, {system}) missing; run "
                                    f"`python -m pipeline evaluate --task {task} --system {system}`")
        by_task[task].append(json.loads(path.read_text()))
    for rows in by_task.values():
        rows.sort(key=lambda m: bool(m.get("is_floor")))      # stable: file order kept
    return by_task


def _fmt(key: str, value: float | None) -> str:
    return "–" if value is None else FORMATS.get(key, "{:.4f}").format(value)


def is_degenerate(m: dict[str, Any]) -> bool:
    """Mostly empty candidates or copies of the source (pipeline.degenerate): never bold."""
    return bool((m.get("degenerate") or {}).get("flags"))


def _ranked(m: dict[str, Any]) -> bool:
    return not m.get("is_floor") and not is_degenerate(m)


def _best(rows: list[dict[str, Any]], key: str, direction: int) -> float | None:
    values = [r["table"].get(key) for r in rows if _ranked(r)]
    values = [v for v in values if v is not None]
    if not values or direction == 0:
        return None
    return max(values) if direction > 0 else min(values)


def _row_label(m: dict[str, Any]) -> str:
    label = m.get("label") or m["system"]
    if m.get("is_floor") and "floor" not in label.lower():
        label += " (floor)"
    return label + (" †" if is_from_scratch(m) else "") + (" ⚠" if is_degenerate(m) else "")


def is_from_scratch(m: dict[str, Any]) -> bool:
    """A system trained from scratch whose paper row fine-tunes a pretrained model."""
    return m.get("pretrained") is False and m.get("paper_system") in PAPER_FINETUNED


def paper_mismatches(m: dict[str, Any]) -> dict[str, str]:
    """Column key -> why this row's value does not measure what the paper's does (keys absent
    are comparable): another model size or no pretraining, another BERTScore model, MBR over
    another number of candidates, diversity over another number of seeds."""
    keys = [key for _, column, _ in COLUMNS for key in column]
    if not m.get("paper_scale") or is_from_scratch(m):
        return dict.fromkeys(keys, f"{_row_label(m)} is not the paper's model (size or pretraining)")
    why = {}
    if m.get("bertscore_model") != PAPER_BERTSCORE:
        why["bertscore"] = (f"BERTScore here uses `{m.get('bertscore_model')}`, the paper "
                            f"`{PAPER_BERTSCORE}`")
    quality_from = m["table"].get("quality_from", "")
    if quality_from.startswith("mbr@") and int(quality_from[4:]) != PAPER_MBR_SIZE:
        why.update(dict.fromkeys(QUALITY_KEYS, f"{_row_label(m)}: MBR over {quality_from[4:]} "
                                               f"candidates, the paper's over {PAPER_MBR_SIZE}"))
    k = (m.get("diversity") or {}).get("k")
    if k != PAPER_DIVERSITY_K:
        why.update(dict.fromkeys(("self_bleu", "div4"), f"diversity over {k} seeds, the paper's "
                                                        f"over {PAPER_DIVERSITY_K}"))
    return why


def render_table(rows: list[dict[str, Any]], paper: dict[str, dict[str, float]],
                 withheld: set[str] | None = None) -> list[str]:
    """Markdown lines of one task's table.

    Args:
        rows: the task's metrics JSONs, floors last.
        paper: system name -> the paper's numbers for this task ({} when not a paper task).
        withheld: collects why a paper value was not shown (`paper_mismatches`), if given.
    """
    lines = ["| System | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    best = {key: _best(rows, key, d) for _, keys, dirs in COLUMNS for key, d in zip(keys, dirs)}
    for m in rows:
        ref, mismatches = paper.get(m["system"], {}), paper_mismatches(m)
        cells = []
        for _, keys, _dirs in COLUMNS:
            ours = []
            for key in keys:
                value, text = m["table"].get(key), _fmt(key, m["table"].get(key))
                is_best = value is not None and value == best[key] and _ranked(m)
                ours.append(f"**{text}**" if is_best else text)
            cell = " / ".join(ours)
            reasons = {mismatches[key] for key in keys if key in mismatches}
            if all(key in ref for key in keys) and not reasons:
                cell += " (paper " + " / ".join(_fmt(k, ref[k]) for k in keys) + ")"
            elif all(key in ref for key in keys) and withheld is not None:
                withheld.update(reasons)
            cells.append(cell)
        lines.append(f"| {_row_label(m)} | " + " | ".join(cells) + " |")
    return lines


def paper_rows(cfg: Config, task: str, rows: list[dict[str, Any]],
               table: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """system name -> the paper's numbers of its row, for a task that names a paper task."""
    paper_task = cfg.tasks[task].paper_task
    out = {}
    for m in rows:
        name = m.get("paper_system")
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
    for m in filter(is_degenerate, rows):
        rates = m["degenerate"]
        lines += ["", f"⚠ {m.get('label') or m['system']}: degenerate outputs ("
                  + ", ".join(f"{100 * rates[name]:.0f} % {name.replace('_', ' ')}"
                              for name in rates["flags"]) + "); its values are never bold."]
    return lines


def render_report(cfg: Config, by_task: dict[str, list[dict[str, Any]]]) -> str:
    """The whole tables.md text."""
    table = load_paper_table()
    parts = ["# Results", "",
             "Columns as in the paper's Table 1 (docs/metrics.md). Values in parentheses: the "
             "paper's, where the task and system map to one of its rows. Bold: best per column, "
             "floor rows excluded. Figures: `figures/`.", ""]
    for task, rows in by_task.items():
        title = cfg.tasks[task].label or task
        paper_task = cfg.tasks[task].paper_task
        parts += [f"## {title}" + (f" (paper task: {paper_task})" if paper_task else ""), ""]
        withheld: set[str] = set()
        parts += render_table(rows, paper_rows(cfg, task, rows, table), withheld) if rows \
            else ["(no systems)"]
        parts += [""] + run_description(cfg, task, rows) + [""]
        if withheld:
            parts += ["No paper value is shown where the cell does not measure what the paper's "
                      "does: " + "; ".join(sorted(withheld)) + ".", ""]
    return "\n".join(parts)


def mbr_curve_records(by_task: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """BLEU of the MBR output per candidate-set size, one record per (task, system, size): the
    data of `dvc plots show` (the same numbers as bleu_vs_candidates.png)."""
    return [{"task": task, "system": m["system"], "size": int(size), "bleu": q["bleu"]}
            for task, rows in by_task.items() for m in rows
            for size, q in sorted(m.get("mbr", {}).items(), key=lambda item: int(item[0]))]


def write_report(cfg: Config, metrics_paths: dict[tuple[str, str], Path], tables_path: Path,
                 figures_dir: Path, curves_path: Path | None = None,
                 sweep_paths: dict[tuple[str, str], Path] | None = None) -> None:
    """Write results/tables.md, the figures and the plot data, each atomically, from the metrics.

    Args:
        cfg: the parameter file (which (task, system) cells to show, and the run settings).
        metrics_paths: (task, system) -> its metrics JSON.
        tables_path: the markdown file to write.
        figures_dir: the folder of PNG figures (replaced as a whole).
        curves_path: JSON records of BLEU vs candidate-set size (for `dvc plots`), if wanted.
        sweep_paths: (task, system) -> its sampler sweep JSON, for the systems swept.
    """
    by_task = load_metrics(cfg, metrics_paths)
    for task, rows in by_task.items():
        for m in rows:
            path = (sweep_paths or {}).get((task, m["system"]))
            if path is not None:
                m["sampler_sweep"] = json.loads(Path(path).read_text())
    plots.write_figures(by_task, Path(figures_dir))
    if curves_path is not None:
        write_json(Path(curves_path), mbr_curve_records(by_task))
    with atomic_file(Path(tables_path)) as handle:
        handle.write(render_report(cfg, by_task))

"""results/figures/*.png: the paper's figures, redrawn from the metrics JSONs.

- bleu_vs_candidates.png: BLEU of the MBR output against candidate-set size (one panel per task);
- quality_diversity.png: BLEU against div-4 per system (one panel per task);
- stepwise.png: BLEU and div-4 of the intermediate outputs against % of generation steps;
- inference_time.png: wall time of the test-set generation per system;
- quality_vs_steps.png: BLEU against sampling steps and against seconds, a line per (system,
  sampler), from the `sweep` stage (the cost of quality);
- convergence.png: validation BLEU of a fixed cheap decode against training steps and training
  seconds, a line per system whose family probes its checkpoints.
A figure without data is still written and says so in the image, so the set of files is fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402

from pipeline.io import atomic_dir  # noqa: E402

Metrics = dict[str, list[dict[str, Any]]]   # task -> metrics JSONs of its systems


def _label(m: dict[str, Any]) -> str:
    return m.get("label") or m["system"]


def _panels(num: int, title: str) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, max(num, 1), figsize=(5 * max(num, 1), 4), squeeze=False)
    fig.suptitle(title)
    return fig, list(axes[0])


def _no_data(ax: plt.Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no data:\n{what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def bleu_vs_candidates(by_task: Metrics) -> plt.Figure:
    """MBR BLEU against the candidate-set size |S|, a line per system."""
    fig, axes = _panels(len(by_task), "BLEU of the MBR output vs candidate-set size")
    for ax, (task, rows) in zip(axes, by_task.items()):
        curves = [(m, sorted((int(n), q["bleu"]) for n, q in m.get("mbr", {}).items())) for m in rows]
        curves = [(m, c) for m, c in curves if c]
        if not curves:
            _no_data(ax, "no MBR results")
        for m, curve in curves:
            ax.plot(*zip(*curve), marker="o", label=_label(m))
        ax.set(title=task, xlabel="candidates |S| (seeds)", ylabel="sentence BLEU")
        if curves:
            ax.legend(fontsize="small")
    return fig


def quality_diversity(by_task: Metrics) -> plt.Figure:
    """Table BLEU against div-4 over k seeds, a point per system."""
    fig, axes = _panels(len(by_task), "Quality vs diversity")
    for ax, (task, rows) in zip(axes, by_task.items()):
        points = [(m, m["table"].get("div4"), m["table"].get("bleu")) for m in rows]
        points = [p for p in points if p[1] is not None and p[2] is not None]
        if not points:
            _no_data(ax, "no table values")
        for m, div4, bleu in points:
            ax.scatter(div4, bleu, label=_label(m))
            ax.annotate(_label(m), (div4, bleu), fontsize="x-small", xytext=(3, 3),
                        textcoords="offset points")
        ax.set(title=task, xlabel="div-4 ↑ (over k seeds)", ylabel="BLEU ↑")
    return fig


def _curves(by_task: Metrics, key: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(task: system label, records) for every system whose metrics carry `key`."""
    return [(f"{task}: {_label(m)}", m[key]) for task, rows in by_task.items()
            for m in rows if m.get(key)]


def _draw_curves(ax: plt.Axes, curves: list[tuple[str, list[dict[str, Any]]]],
                 x: Callable[[dict[str, Any]], float], y: Callable[[dict[str, Any]], float],
                 empty: str) -> None:
    """One line per curve, x(record) against y(record); the `empty` note when there is none."""
    if not curves:
        _no_data(ax, empty)
        return
    for label, records in curves:
        ax.plot([x(r) for r in records], [y(r) for r in records], marker=".", label=label)
    ax.legend(fontsize="small")


def stepwise(by_task: Metrics) -> plt.Figure:
    """BLEU and div-4 of the decoded intermediate outputs along the generation."""
    fig, axes = _panels(2, "Step-wise quality and diversity of the intermediate outputs")
    curves = _curves(by_task, "stepwise")
    for ax, key, name in zip(axes, ("bleu", "div4"), ("BLEU", "div-4")):
        _draw_curves(ax, curves, lambda p: 100 * p["fraction"], lambda p, key=key: p[key],
                     "no system recorded steps (steps.jsonl)")
        ax.set(xlabel="% of generation steps", ylabel=name, title=name)
    return fig


def inference_time(by_task: Metrics) -> plt.Figure:
    """Wall time of generating the test set, a bar per (task, system)."""
    bars = [(f"{task}: {_label(m)}", m["generation_seconds"]) for task, rows in by_task.items()
            for m in rows if m.get("generation_seconds") is not None]
    fig, axes = _panels(1, "Inference time (generation of the test set, all seeds)")
    ax = axes[0]
    if not bars:
        _no_data(ax, "no generation timings (generation.json)")
    else:
        ax.barh([b[0] for b in bars], [b[1] for b in bars])
        ax.invert_yaxis()
        ax.set(xlabel="seconds")
    return fig


def _sweep_lines(by_task: Metrics) -> dict[str, list[dict[str, Any]]]:
    """label "task: system, sampler" -> its sweep records (metrics rows carry "sampler_sweep").
    A point decoded on fewer sources than the system's others (2000-step DDPM on a subset) says
    so in its label: its BLEU is over other sentences."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for task, rows in by_task.items():
        for m in rows:
            records = m.get("sampler_sweep", [])
            most = max((r.get("num_sources", 0) for r in records), default=0)
            for record in records:
                name = record["sampler"] + (f" eta {record['eta']}" if record.get("eta") else "")
                if record.get("num_sources", most) < most:
                    name += f" ({record['num_sources']} sources)"
                lines.setdefault(f"{task}: {_label(m)}, {name}", []).append(record)
    return {k: sorted(v, key=lambda r: r["steps"]) for k, v in lines.items()}


def quality_vs_steps(by_task: Metrics) -> plt.Figure:
    """Single-candidate BLEU against the number of sampling steps and against wall seconds."""
    fig, axes = _panels(2, "What sampling quality costs: BLEU vs steps and vs time")
    lines = _sweep_lines(by_task)
    for ax, key, name in zip(axes, ("steps", "wall_s"), ("sampling steps", "seconds (all seeds)")):
        if not lines:
            _no_data(ax, "no sampler sweep (a `sweep:` block in the parameters)")
            continue
        for label, records in lines.items():
            ax.plot([r[key] for r in records], [r["bleu_single"] for r in records], marker="o",
                    label=label)
        ax.set(xscale="log", xlabel=name, ylabel="BLEU (one candidate)")
        ax.legend(fontsize="x-small")
    return fig


def convergence(by_task: Metrics) -> plt.Figure:
    """Validation BLEU of the probe decode at each checkpoint, against steps and seconds."""
    fig, axes = _panels(2, "Convergence: validation BLEU of a fixed cheap decode")
    curves = _curves(by_task, "convergence")
    for ax, key, name in zip(axes, ("step", "train_s"), ("training steps", "training seconds")):
        _draw_curves(ax, curves, lambda r, key=key: r[key], lambda r: r["bleu"],
                     "no system probed its checkpoints")
        ax.set(xlabel=name, ylabel="validation BLEU")
    return fig


FIGURES: dict[str, Callable[[Metrics], plt.Figure]] = {
    "bleu_vs_candidates.png": bleu_vs_candidates,
    "quality_diversity.png": quality_diversity,
    "stepwise.png": stepwise,
    "inference_time.png": inference_time,
    "quality_vs_steps.png": quality_vs_steps,
    "convergence.png": convergence,
}


def write_figures(by_task: Metrics, figures_dir: Path) -> list[Path]:
    """Draw every figure into a fresh folder that replaces `figures_dir` on success."""
    with atomic_dir(figures_dir) as tmp:
        for name, draw in FIGURES.items():
            fig = draw(by_task)
            fig.tight_layout()
            fig.savefig(tmp / name, dpi=120)
            plt.close(fig)
    return [figures_dir / name for name in FIGURES]

"""DiffuSeq against DiffuSeq-v2 on the embedded task: convergence, and quality against sampling cost.

    # train a system from the parameter file, probing BLEU every --probe-every steps
    python bench/bench_v2.py convergence --system diffuseq [--steps N] [--out bench-out/v2]
    python bench/bench_v2.py convergence --system diffuseq_v2
    # BLEU and wall time per (sampler, steps) on test sources, and the paper's 10 x 2000-step DDPM
    python bench/bench_v2.py sweep --model diffuseq=bench-out/v2/diffuseq/model \\
        --model diffuseq_v2=bench-out/v2/diffuseq_v2/model

`convergence` trains exactly as the train stage does (same seed, config and data order; the probe
uses no global random state), probing at every `--probe-every` steps instead of the system's
`eval_every`, and writes `<out>/<name>/convergence.json` (per probe: step, training seconds
without validation and probes, BLEU on validation sources of two common cheap decodes
"DPM-Solver++ 10 steps" and "DDIM eta 1, 20 steps" and of the system's own decode) and the final
model folder.
`sweep` prints and writes `<out>/sweep.json`: per model, single-candidate and MBR@10 BLEU with
the cost (wall and process CPU seconds) of 10 seeds batched for each fast sampler point, and
2000-step DDPM run the paper's way (one run per seed; the cost of ten runs extrapolated from the
--ddpm-seeds timed ones). On a shared machine compare the CPU seconds: wall time there mostly
measures the other jobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import torch

from pipeline import checkpoint
from pipeline.config import load_config
from pipeline.data.dataset import load_split, load_task_info
from pipeline.diffusion.sweep import sampler_sweep
from pipeline.models.registry import get_family, load_model, system_configs
from pipeline.quick_eval import (EvalSet, decode_bleu, generate_texts, load_eval_set,
                                 single_candidate_bleu)
from pipeline.train import Probe, fit

FAST_GRID = [{"sampler": "dpm_solver++", "steps": n, "solver_order": 2} for n in (5, 10, 20)] + [
    {"sampler": "ddim", "steps": n, "eta": 1.0} for n in (20, 100)]
PAPER_SEEDS = 10


def _probe_decodes(decode) -> dict[str, object]:
    """Two common cheap decodes (deterministic DPM-Solver++, 10 steps; stochastic DDIM, eta 1,
    20 steps) and the system's own, without step traces; each keeps the system's clamping."""
    own = dataclasses.replace(decode, record_fractions=[])
    return {"dpm10": dataclasses.replace(own, sampler="dpm_solver++", steps=10, solver_order=2),
            "ddim20": dataclasses.replace(own, sampler="ddim", steps=20, eta=1.0),
            "own": own}


def convergence(args: argparse.Namespace) -> None:
    cfg = load_config(args.params)
    system = cfg.systems[args.system]
    family = get_family(system.family)
    model_cfg, decode = system_configs(system, f"systems.{args.system}")
    steps = args.steps or system.train.steps
    train_cfg = dataclasses.replace(system.train, steps=steps, eval_every=args.probe_every,
                                    checkpoint_every=steps)
    data_dir, out = Path(args.data), Path(args.out) / (args.name or args.system)
    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(train_cfg.seed)
    model = family.build(model_cfg, load_task_info(data_dir))
    valid = load_eval_set(data_dir, "valid", args.probe_sources)
    probes = _probe_decodes(decode)
    scores: list[dict[str, float]] = []

    def score(probed) -> float:
        scores.append({f"bleu_{name}": decode_bleu(probed, valid, d, seeds=args.probe_seeds,
                                                    batch_size=args.probe_sources)
                       for name, d in probes.items()})
        print(json.dumps(scores[-1]), flush=True)
        return scores[-1]["bleu_own"]

    probe = Probe(score)
    model = fit(model, load_split(data_dir, "train"), load_split(data_dir, "valid"), train_cfg,
                out / "train_state", device="cpu", progress=False, probe=probe)
    checkpoint.save_model(model, model.export_config(), out / "model", family.name,
                          extra={"system": args.system, "step": steps})
    records = [{"step": r["step"], "train_s": r["train_s"], **s} for r, s in zip(probe.records, scores)]
    (out / "convergence.json").write_text(json.dumps({
        "system": args.system, "steps": steps, "probe_sources": args.probe_sources,
        "probe_seeds": args.probe_seeds, "probes": {k: dataclasses.asdict(v) for k, v in probes.items()},
        "records": records}, indent=1))


def _paper_procedure(model, data: EvalSet, decode, seeds: list[int], batch_size: int) -> dict:
    """2000-step DDPM, one separate run per seed (the paper's candidate sets)."""
    ddpm = dataclasses.replace(decode, sampler="ddpm", steps=model.cfg.diffusion_steps)
    runs = [generate_texts(model, data, [seed], ddpm, batch_size) for seed in seeds]
    candidates = [[texts[i][0] for texts, _ in runs] for i in range(len(data.pairs))]
    record = {"sampler": "ddpm", "steps": model.cfg.diffusion_steps, "seeds": seeds,
              "bleu_single": single_candidate_bleu(candidates, data.references)}
    for key in ("wall_s", "cpu_s"):
        per_run = [cost[key] for _, cost in runs]
        record.update({f"{key}_per_run": per_run,
                       f"{key}_10_runs_extrapolated": PAPER_SEEDS * sum(per_run) / len(per_run)})
    return record


def _warm_up(model, data: EvalSet, decode) -> None:
    """A tiny DPM-Solver++ decode, so that no timed point pays diffusers' import or first allocations."""
    tiny = EvalSet(data.pairs[:2], data.references[:2], data.tokenizer)
    generate_texts(model, tiny, [0], dataclasses.replace(decode, sampler="dpm_solver++", steps=2), 2)


def sweep(args: argparse.Namespace) -> None:
    cfg = load_config(args.params)
    torch.set_num_threads(args.threads)
    data = load_eval_set(Path(args.data), "test", args.sources)
    seeds = list(range(1, PAPER_SEEDS + 1))
    report = {"num_sources": args.sources, "threads": args.threads, "models": {}}
    for spec in args.model:
        system, path = spec.split("=", 1)
        model = load_model(Path(path))
        _, decode = system_configs(cfg.systems[system], f"systems.{system}")
        decode = dataclasses.replace(decode, record_fractions=[])
        _warm_up(model, data, decode)
        paper = _paper_procedure(model, data, decode, seeds[:args.ddpm_seeds], args.sources)
        fast = sampler_sweep(model, data, decode, FAST_GRID, seeds, args.sources)
        report["models"][path] = {"system": system, "fast": fast, "ddpm_paper_procedure": paper}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sweep.json").write_text(json.dumps(report, indent=1))  # after each model
        print(f"{system} ({path}): DDPM 2000 steps, one run per seed: BLEU {paper['bleu_single']:.4f}; per run "
              f"{paper['wall_s_per_run']} s wall, {paper['cpu_s_per_run']} s CPU -> 10 runs "
              f"{paper['wall_s_10_runs_extrapolated']:.1f} s wall, {paper['cpu_s_10_runs_extrapolated']:.1f} s CPU",
              flush=True)
        for row in fast:
            print(f"  {row['sampler']:13s} {row['steps']:3d} steps (eta {row.get('eta', 0)}), 10 seeds "
                  f"batched: BLEU single "
                  f"{row['bleu_single']:.4f}  MBR@10 {row['bleu_mbr']:.4f}  {row['wall_s']:7.2f} s wall "
                  f"({paper['wall_s_10_runs_extrapolated'] / row['wall_s']:5.0f}x less than 10 DDPM runs), "
                  f"{row['cpu_s']:7.2f} s CPU ({paper['cpu_s_10_runs_extrapolated'] / row['cpu_s']:5.0f}x)",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--data", default="data/processed/minipara")
    parser.add_argument("--out", default="bench-out/v2")
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convergence")
    conv.add_argument("--system", required=True)
    conv.add_argument("--name", help="output folder name (default: the system)")
    conv.add_argument("--steps", type=int, help="override train.steps (the lr schedule follows)")
    conv.add_argument("--probe-every", type=int, default=250)
    conv.add_argument("--probe-sources", type=int, default=100)
    conv.add_argument("--probe-seeds", type=int, nargs="+", default=[0, 1])
    swp = sub.add_parser("sweep")
    swp.add_argument("--model", action="append", required=True, help="system=model folder")
    swp.add_argument("--sources", type=int, default=100)
    swp.add_argument("--ddpm-seeds", type=int, default=2)
    args = parser.parse_args()
    {"convergence": convergence, "sweep": sweep}[args.command](args)


if __name__ == "__main__":
    main()

"""Throughput of DiffuSeq on this machine: training steps, sampling steps, rounding vs network.

    python bench/bench_diffuseq.py [--quick] [--threads 2]

Configurations: `default` (the embedded demo's model), `reference` (2-layer BERT, H=256, 4 heads,
FFN 1024, d=64, seq_len 64, batch 64, vocab 30522, T=2000, loss-aware) and `paper` (bert-base
encoder, d=128, micro-batch 16 x 128 tokens). Figures are printed; the machine is shared, so
compare ratios measured in the same run. Long runs (2000 DDPM steps) are extrapolated from timing
a few dozen steps, and say so.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.diffusion.rounding import NearestEmbedding
from pipeline.models.base import TaskInfo
from pipeline.models.diffuseq import DecodeConfig, DiffuSeq, EncoderConfig, ModelConfig, build


@dataclass(frozen=True)
class Setting:
    model: ModelConfig
    vocab_size: int
    seq_len: int
    micro_batch: int


SETTINGS = {
    "default": Setting(ModelConfig(hidden_dim=64, hidden_t_dim=64, diffusion_steps=2000,
                                   encoder=EncoderConfig(num_layers=3, num_heads=4, hidden_size=192,
                                                         intermediate_size=768, max_position=64)),
                       vocab_size=1000, seq_len=64, micro_batch=64),
    "reference": Setting(ModelConfig(hidden_dim=64, hidden_t_dim=128, diffusion_steps=2000,
                                     encoder=EncoderConfig(num_layers=2, num_heads=4, hidden_size=256,
                                                           intermediate_size=1024, max_position=512)),
                         vocab_size=30522, seq_len=64, micro_batch=64),
    "paper": Setting(ModelConfig(hidden_dim=128, hidden_t_dim=128, diffusion_steps=2000,
                                 encoder=EncoderConfig()),
                     vocab_size=30522, seq_len=128, micro_batch=16),
}
RELEASE = {"reference": "2.05 s/step, 2,000 tokens/s; 2000 DDPM steps for 64 sequences 3,395 s "
                        "(93% rounding); 100-step gap sampler 177 s",
           "paper": "10.6 s/step, 194 tokens/s"}


def make_model(setting: Setting) -> tuple[DiffuSeq, list[tuple[np.ndarray, np.ndarray]]]:
    """The model and a micro-batch of random pairs filling about the whole sequence."""
    task = TaskInfo(vocab_size=setting.vocab_size, seq_len=setting.seq_len, pad_id=0, cls_id=2,
                    sep_id=3, unk_id=1, tokenizer_dir="")
    rng = np.random.default_rng(0)
    half = (setting.seq_len - 4) // 2
    pairs = [(rng.integers(5, setting.vocab_size, half), rng.integers(5, setting.vocab_size, half))
             for _ in range(setting.micro_batch)]
    torch.manual_seed(0)
    return build(setting.model, task), pairs


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds of fn() over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_training(name: str, setting: Setting, repeats: int, precisions: tuple[str, ...]) -> None:
    """ms/step and tokens/s of forward + backward + AdamW, fp32 and bf16 autocast."""
    model, pairs = make_model(setting)
    model.train()
    batch = model.collate(pairs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    tokens = setting.micro_batch * setting.seq_len
    for precision in precisions:
        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model.loss(batch)["loss"].mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        seconds = timed(step, repeats)
        print(f"  train {name:9s} {precision}: {seconds * 1000:8.0f} ms/step  "
              f"{tokens / seconds:8.0f} tokens/s  (micro-batch {setting.micro_batch} x {setting.seq_len})")


def bench_sampling(name: str, setting: Setting, probe_steps: int, respaced: list[int]) -> None:
    """Sequences/s for 2000 DDPM steps (extrapolated) and respaced DDIM; rounding vs network."""
    model, pairs = make_model(setting)
    model.eval()
    batch = model.collate(pairs)
    rows = len(pairs)
    # DDIM with eta=1 draws per-row noise each step like DDPM: its per-step cost stands for DDPM's.
    per_step = timed(lambda: model.generate(batch, [0], list(range(rows)),
                                            DecodeConfig(sampler="ddim", steps=probe_steps, eta=1.0)),
                     1, warmup=0) / probe_steps
    print(f"  sample {name:9s} DDPM 2000 steps: {2000 * per_step:8.1f} s for {rows} sequences "
          f"({rows / (2000 * per_step):.3f} seq/s; extrapolated from {probe_steps} timed steps)")
    for steps in respaced:
        seconds = timed(lambda: model.generate(batch, [0], list(range(rows)),
                                               DecodeConfig(sampler="ddim", steps=steps)), 1, warmup=0)
        print(f"  sample {name:9s} DDIM {steps:4d} steps: {seconds:8.1f} s for {rows} sequences "
              f"({rows / seconds:.2f} seq/s)")
    bench_rounding_share(name, model, batch)


@torch.no_grad()
def bench_rounding_share(name: str, model: DiffuSeq, batch: dict) -> None:
    """Time of one network forward vs one clamp (target positions, and all positions)."""
    z = torch.randn(*batch["input_ids"].shape, model.cfg.hidden_dim)
    t = torch.full((len(z),), 500.0)
    clamp = NearestEmbedding(model.net.word_embedding.weight)
    target = batch["input_mask"].bool()
    net = timed(lambda: model.net(z, t), 3)
    round_target = timed(lambda: clamp(z[target]), 3)
    round_all = timed(lambda: clamp(z), 3)
    print(f"  step   {name:9s} network forward {net * 1000:7.1f} ms | rounding target positions "
          f"{round_target * 1000:7.1f} ms ({round_target / (net + round_target):.0%} of the pair) | "
          f"all positions {round_all * 1000:7.1f} ms")


def bench_batched_seeds(setting: Setting, num_sources: int, steps: int) -> None:
    """10 seeds in one batched reverse process vs one seed at a time (identical candidates)."""
    model, pairs = make_model(setting)
    model.eval()
    batch = model.collate(pairs[:num_sources])
    seeds, sources = list(range(10)), list(range(num_sources))
    decode = DecodeConfig(sampler="ddim", steps=steps)
    batched = timed(lambda: model.generate(batch, seeds, sources, decode), 1, warmup=0)
    single = timed(lambda: [model.generate(batch, [s], sources, decode) for s in seeds], 1, warmup=0)
    print(f"  seeds  default   10 seeds x {num_sources} sources, DDIM {steps}: batched {batched:.2f} s, "
          f"one seed at a time {single:.2f} s ({single / batched:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (< 5 min)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # bf16 matmuls are fast only with AVX512-BF16/AMX; on an AVX2-only CPU they are emulated.
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    start = time.perf_counter()
    repeats = 2 if args.quick else 5
    for name, setting in SETTINGS.items():
        print(f"[{name}] release reference: {RELEASE.get(name, 'n/a')}")
        quick_paper = args.quick and name == "paper"  # bert-base: one fp32 step is enough
        bench_training(name, setting, 1 if quick_paper else repeats,
                       ("fp32",) if quick_paper else ("fp32", "bf16"))
        if name != "paper":
            bench_sampling(name, setting, 10 if args.quick else 40,
                           [20] if args.quick else [20, 100])
    bench_batched_seeds(SETTINGS["default"], 20, 10 if args.quick else 20)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

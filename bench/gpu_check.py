"""The prepared GPU check: paper-size DiffuSeq training and sampling, and Transformer-base decoding.

    bench/gpu_check.sh                          # on a CUDA machine: paper sizes, bf16
    bench/gpu_check.sh --size tiny --device cpu # the same code at toy sizes (the test runs this)

Prints one line per measurement and, last, one JSON object with every figure:
- training: paper-size DiffuSeq (bert-base encoder with SDPA attention, d=128, V=30522, seq_len
  128) steps under bf16 autocast where the device has native bf16, fused AdamW on CUDA, the
  network `torch.compile`d when that is faster than eager (both timed); tokens/s, peak memory,
  MFU against a bf16 (or fp32) matmul peak measured in the same run;
- sampling: sequences/s of DDPM over all T steps (extrapolated from a timed probe, and said so)
  and of the respaced DDIM at 100 and 20 steps;
- decoding: Transformer-base (6+6 layers, d_model 512) seeded-sampling decode of 50 sources at
  max_len 128, sequences/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's `pipeline`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.distributed import bf16_pays  # noqa: E402
from pipeline.models import diffuseq, transformer  # noqa: E402
from pipeline.models.base import TaskInfo  # noqa: E402

# name -> sizes. paper: the paper's DiffuSeq and Transformer-base; tiny: seconds on a CPU.
SIZES = {
    "paper": dict(vocab_size=30522, seq_len=128, micro_batch=64, sample_rows=64, decode_sources=50,
                  max_len=128, probe_steps=100, diffuseq=diffuseq.ModelConfig(),
                  transformer=transformer.ModelConfig(d_model=512, num_heads=8, num_encoder_layers=6,
                                                      num_decoder_layers=6, ffn_dim=2048)),
    "tiny": dict(vocab_size=500, seq_len=32, micro_batch=4, sample_rows=4, decode_sources=3,
                 max_len=8, probe_steps=2,
                 diffuseq=diffuseq.ModelConfig(hidden_dim=16, hidden_t_dim=16, diffusion_steps=40,
                                               encoder=diffuseq.EncoderConfig(
                                                   num_layers=1, num_heads=2, hidden_size=32,
                                                   intermediate_size=64, max_position=32)),
                 transformer=transformer.ModelConfig(d_model=32, num_heads=2, num_encoder_layers=1,
                                                     num_decoder_layers=1, ffn_dim=64)),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Fastest seconds of fn() over `repeats` calls after `warmup` calls, device synchronised."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated device memory (CUDA) or peak resident set size of the process (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of a size^3 matmul: the MFU reference, measured in this run."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / timed(lambda: a @ a, device, 3)


def task_info(sizes: dict) -> TaskInfo:
    return TaskInfo(vocab_size=sizes["vocab_size"], seq_len=sizes["seq_len"], pad_id=0, cls_id=2,
                    sep_id=3, unk_id=1, tokenizer_dir="")


def random_pairs(sizes: dict, count: int, rng: np.random.Generator) -> list:
    """QQP-like pairs: ~12-piece sources and targets (shorter when seq_len is small)."""
    piece = min(12, sizes["seq_len"] // 4)
    return [(rng.integers(5, sizes["vocab_size"], piece), rng.integers(5, sizes["vocab_size"], piece))
            for _ in range(count)]


def check_training(sizes: dict, device: torch.device, bf16: bool, compile_net: str,
                   repeats: int) -> dict:
    """Training steps: eager and (when asked) compiled network; the faster one is reported."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = diffuseq.build(sizes["diffuseq"], task_info(sizes)).to(device).train()
    batch = {k: v.to(device) for k, v in
             model.collate(random_pairs(sizes, sizes["micro_batch"], np.random.default_rng(0))).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0,
                                  fused=device.type == "cuda")

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)["loss"].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    seconds = {"eager": timed(step, device, repeats)}
    if compile_net == "on":
        model.net.compile()
        seconds["compiled"] = timed(step, device, repeats, warmup=2)
    mode = min(seconds, key=seconds.get)
    tokens = sizes["micro_batch"] * sizes["seq_len"]
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32,
                       8192 if device.type == "cuda" else 512)
    return {"train_ms_per_step": {k: 1000 * v for k, v in seconds.items()}, "train_mode": mode,
            "train_tokens_per_s": tokens / seconds[mode], "train_flops_per_step": counter.get_total_flops(),
            "train_mfu": counter.get_total_flops() / seconds[mode] / peak, "matmul_peak_flops": peak,
            "train_peak_memory_mb": peak_memory_mb(device)}


def source_only_batch(family, model_cfg, sizes: dict, count: int, seed: int, device: torch.device):
    """A model of `family` (seeded initial weights, eval mode) and a batch of `count` random
    sources without targets, as generation receives them."""
    torch.manual_seed(0)
    model = family.build(model_cfg, task_info(sizes)).to(device).eval()
    pairs = [(src, np.zeros(0, dtype=np.int64))
             for src, _ in random_pairs(sizes, count, np.random.default_rng(seed))]
    return model, model.collate(pairs), len(pairs)


def check_sampling(sizes: dict, device: torch.device, repeats: int) -> dict:
    """Sequences/s of DDPM (all T steps, extrapolated from probe_steps) and respaced DDIM."""
    model, batch, rows = source_only_batch(diffuseq, sizes["diffuseq"], sizes, sizes["sample_rows"], 1,
                                           device)
    steps_t = sizes["diffuseq"].diffusion_steps

    def sample(**decode) -> Callable[[], object]:
        return lambda: model.generate(batch, [0], list(range(rows)), diffuseq.DecodeConfig(**decode))

    # DDIM with eta=1 draws per-row noise at every step like DDPM: its per-step cost is DDPM's.
    probe = sizes["probe_steps"]
    ddpm = steps_t * timed(sample(sampler="ddim", steps=probe, eta=1.0), device, repeats) / probe
    out = {f"ddpm_{steps_t}_seq_per_s": rows / ddpm}
    print(f"sample DDPM {steps_t} steps: {rows / ddpm:.2f} sequences/s ({rows} rows; "
          f"extrapolated from {probe} timed steps)")
    for steps in (100, 20):
        steps = min(steps, steps_t)
        seconds = timed(sample(sampler="ddim", steps=steps), device, repeats)
        out[f"ddim_{steps}_seq_per_s"] = rows / seconds
        print(f"sample DDIM {steps} steps: {rows / seconds:.2f} sequences/s ({rows} rows)")
    return out


def check_decoding(sizes: dict, device: torch.device, repeats: int) -> dict:
    """Transformer-base seeded-sampling decode of decode_sources sources at max_len tokens."""
    model, batch, rows = source_only_batch(transformer, sizes["transformer"], sizes,
                                           sizes["decode_sources"], 2, device)
    decode = dataclasses.replace(transformer.DecodeConfig(), max_len=sizes["max_len"])
    seconds = timed(lambda: model.generate(batch, [0], list(range(rows)), decode), device, repeats)
    print(f"decode Transformer: {rows / seconds:.2f} sequences/s ({rows} sources, "
          f"max_len {sizes['max_len']})")
    return {"transformer_decode_seq_per_s": rows / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="torch.compile the network (auto: on CUDA only)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    compile_net = args.compile if args.compile != "auto" else ("on" if device.type == "cuda" else "off")
    sizes, bf16 = SIZES[args.size], bf16_pays(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.backends.cpu.get_cpu_capability()})"
    print(f"torch {torch.__version__}, device {name}, size {args.size}, bf16 {bf16}, "
          f"compile {compile_net}")
    result = {"device": name, "size": args.size, "bf16": bf16}
    result.update(check_training(sizes, device, bf16, compile_net, args.repeats))
    print(f"train: {result['train_tokens_per_s']:.0f} tokens/s ({result['train_mode']}), "
          f"MFU {result['train_mfu']:.1%}, peak memory {result['train_peak_memory_mb']:.0f} MiB")
    result.update(check_sampling(sizes, device, args.repeats))
    result.update(check_decoding(sizes, device, args.repeats))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Throughput of DiffuSeq on this machine: training steps, sampling steps, rounding vs network.

    python bench/bench_diffuseq.py [--quick] [--threads 2] [--only real] [--baseline-rev main]

Configurations:
- `default`: the embedded demo's model and task (params/default.yaml: 3 layers, H=128, d=64,
  vocabulary 1000, seq_len 40).
- `real`: the same model on real data: BERT's 30522 word pieces, seq_len 128, QQP-like pairs
  (~12-piece sources and targets, the rest of the 128 positions [PAD]), micro-batch 64; and
  `real_v1000`, the same with a 1000-word vocabulary, for the cost of the vocabulary relative to
  the network (step(V=30522) / step(V=1000)); and the `real` step with `model.dynamic_length`
  (batches padded to their longest example instead of seq_len).
- `reference`: 2-layer BERT, H=256, 4 heads, FFN 1024, d=64, seq_len 64, batch 64, V=30522
  (the size at which the authors' release was timed beside this code).
- `paper`: bert-base encoder, d=128, micro-batch 16 x 128 tokens.

Each training line gives ms/step split into network (forward and backward of everything but the
vocabulary terms), vocabulary terms (the rounding cross-entropy with its backward, timed alone on
tensors of the same shapes; the logged masked NLL is computed on validation batches only) and
optimiser (AdamW), tokens/s (padded positions, as the release counts them) and MFU: matmul FLOPs
of one step (counted by torch's FlopCounterMode) per second, against a 2048^3 fp32 / bf16
matmul timed alternately with the step. bf16 autocast is used only where it pays
(`pipeline.distributed.bf16_pays`), as in training.

`--baseline-rev REV` also times the `real` training step of the code at git revision REV (e.g.
`main`), in the same run: REV's `pipeline/` is exported to a temporary folder and this script,
copied beside it, times it there (`--step-only`), so the comparison uses one timing code.

The machine is shared, so compare ratios measured in the same run. Long runs (2000 DDPM steps)
are extrapolated from timing a few dozen steps, and say so.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # time this tree's `pipeline`, not an installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Only the Seq2Seq interface is imported at module level: `--step-only` runs this file against
# another revision's `pipeline` (see --baseline-rev); newer helpers are imported where used.
from pipeline.models.base import TaskInfo  # noqa: E402
from pipeline.models.diffuseq import DiffuSeq, EncoderConfig, ModelConfig, build  # noqa: E402


@dataclass(frozen=True)
class Setting:
    model: ModelConfig
    vocab_size: int
    seq_len: int
    micro_batch: int
    piece_length: int | None = None  # mean source / target length; None: fill the sequence


DEMO_MODEL = ModelConfig(hidden_dim=64, hidden_t_dim=64, diffusion_steps=2000,
                         encoder=EncoderConfig(num_layers=3, num_heads=4, hidden_size=128,
                                               intermediate_size=512, dropout=0.0,
                                               attention_dropout=0.0, max_position=128))
REAL = Setting(DEMO_MODEL, vocab_size=30522, seq_len=128, micro_batch=64, piece_length=12)
SETTINGS = {
    "default": Setting(replace(DEMO_MODEL, encoder=replace(DEMO_MODEL.encoder, max_position=40)),
                       vocab_size=1000, seq_len=40, micro_batch=64, piece_length=12),
    "real": REAL,
    "real_v1000": replace(REAL, vocab_size=1000),
    "reference": Setting(ModelConfig(hidden_dim=64, hidden_t_dim=128, diffusion_steps=2000,
                                     encoder=EncoderConfig(num_layers=2, num_heads=4, hidden_size=256,
                                                           intermediate_size=1024, max_position=512)),
                         vocab_size=30522, seq_len=64, micro_batch=64),
    "paper": Setting(ModelConfig(hidden_dim=128, hidden_t_dim=128, diffusion_steps=2000,
                                 encoder=EncoderConfig()),
                     vocab_size=30522, seq_len=128, micro_batch=16),
}
RELEASE = {"reference": "2.05 s/step, 2,000 tokens/s (2 threads); 1,173 tokens/s (1 thread); "
                        "2000 DDPM steps for 64 sequences 3,395 s (93% rounding); "
                        "100-step gap sampler 177 s",
           "paper": "10.6 s/step, 194 tokens/s (2 threads); 108 tokens/s (1 thread)"}


def make_model(setting: Setting) -> tuple[DiffuSeq, list[tuple[np.ndarray, np.ndarray]]]:
    """The model and a micro-batch of random pairs (QQP-like lengths, or filling the sequence)."""
    task = TaskInfo(vocab_size=setting.vocab_size, seq_len=setting.seq_len, pad_id=0, cls_id=2,
                    sep_id=3, unk_id=1, tokenizer_dir="")
    rng = np.random.default_rng(0)
    if setting.piece_length is None:
        lengths = np.full((setting.micro_batch, 2), (setting.seq_len - 4) // 2)
    else:
        lengths = rng.integers(setting.piece_length - 4, setting.piece_length + 5,
                               (setting.micro_batch, 2))
    pairs = [(rng.integers(5, setting.vocab_size, n), rng.integers(5, setting.vocab_size, m))
             for n, m in lengths]
    torch.manual_seed(0)
    return build(setting.model, task), pairs


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Fastest seconds of fn() over `repeats` calls after `warmup` calls (on a shared machine the
    minimum is the least disturbed by other jobs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alternately(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Fastest seconds of each fn over `repeats` rounds of calling them in turn (after one warmup
    call each), so that load from other jobs hits all of them alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        best = [min(b, timed(fn, 1, warmup=0)) for b, fn in zip(best, fns)]
    return best


def use_bf16() -> bool:
    from pipeline.distributed import bf16_pays

    return bf16_pays(torch.device("cpu"))


def training_step(model: DiffuSeq, batch: dict, optimizer: torch.optim.Optimizer,
                  bf16: bool) -> Callable[[], None]:
    """One update as the trainer makes it: loss under autocast, backward, AdamW."""
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)["loss"].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def prepared_step(setting: Setting, bf16: bool) -> Callable[[], None]:
    """A training step of a fresh model of `setting` on its micro-batch."""
    model, pairs = make_model(setting)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    return training_step(model, model.collate(pairs), optimizer, bf16)


def step_seconds(setting: Setting, bf16: bool, repeats: int) -> float:
    """Seconds per training step (the only measurement `--step-only` makes)."""
    return timed(prepared_step(setting, bf16), repeats)


def vocabulary_ratio(bf16: bool, repeats: int) -> float:
    """step(V=30522) / step(V=1000) of the `real` model, the two steps timed alternately (so
    that load from other jobs hits both alike), fastest of `repeats` each."""
    real, small = alternately([prepared_step(SETTINGS[name], bf16) for name in ("real", "real_v1000")],
                              repeats)
    return real / small


def dynamic_length_speedup(bf16: bool, repeats: int) -> str:
    """The `real` step padded to seq_len (the release) and to the batch's longest example
    (`model.dynamic_length`), timed alternately."""
    dynamic = replace(REAL, model=replace(REAL.model, dynamic_length=True))
    model, pairs = make_model(dynamic)
    length = model.collate(pairs)["input_ids"].shape[1]
    full, short = alternately([prepared_step(REAL, bf16), prepared_step(dynamic, bf16)], repeats)
    return (f"{full * 1000:.0f} ms/step at {REAL.seq_len} positions, {short * 1000:.0f} ms/step "
            f"with dynamic_length ({length} positions): {full / short:.1f}x")


def vocabulary_terms(model: DiffuSeq, batch: dict, bf16: bool) -> Callable[[], None]:
    """The training step's vocabulary-sized work alone: the rounding CE over all positions,
    forward and backward, on tensors shaped like the step's (the logged masked NLL of x̂_0 is
    computed on validation batches only)."""
    from pipeline.diffusion.vocab_ce import vocab_nll

    lm_head = model.net.lm_head
    ids = batch["input_ids"]
    z0 = torch.randn(*ids.shape, model.cfg.hidden_dim, requires_grad=True)

    def terms() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            rounding = vocab_nll(z0, lm_head.weight, lm_head.bias, ids).mean(-1)
        rounding.mean().backward()
        model.zero_grad(set_to_none=True)
    return terms


def step_flops(step: Callable[[], None]) -> int:
    """Matmul FLOPs of one call (forward and backward), as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


PEAK_SIZE = 2048  # the MFU reference: a PEAK_SIZE^3 matmul


def peak_matmul(dtype: torch.dtype) -> Callable[[], object]:
    a = torch.randn(PEAK_SIZE, PEAK_SIZE, dtype=dtype)
    return lambda: a @ a


def bench_training(name: str, setting: Setting, repeats: int, bf16: bool) -> None:
    """Print ms/step (network / vocabulary terms / optimiser), tokens/s and MFU; the matmul peak
    is timed alternately with the step, so both see the same load."""
    model, pairs = make_model(setting)
    model.train()
    batch = model.collate(pairs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    step = training_step(model, batch, optimizer, bf16)
    flops = step_flops(step)

    def optimiser_step() -> None:  # AdamW alone, on gradients of the right shapes
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds, vocab, optim, peak = alternately(
        [step, vocabulary_terms(model, batch, bf16), optimiser_step,
         peak_matmul(torch.bfloat16 if bf16 else torch.float32)], repeats)
    peak = 2 * PEAK_SIZE**3 / peak
    tokens = setting.micro_batch * setting.seq_len
    print(f"  train {name:10s} {'bf16' if bf16 else 'fp32'}: {seconds * 1000:7.0f} ms/step = network "
          f"{(seconds - vocab - optim) * 1000:6.0f} + vocabulary terms {vocab * 1000:6.0f} + optimiser "
          f"{optim * 1000:4.0f} | {tokens / seconds:7.0f} tokens/s | MFU "
          f"{flops / seconds / peak:5.1%} ({flops / seconds / 1e9:.0f} of {peak / 1e9:.0f} GFLOP/s)  "
          f"(micro-batch {setting.micro_batch} x {setting.seq_len}, V={setting.vocab_size})",
          flush=True)


def bench_sampling(name: str, setting: Setting, probe_steps: int, respaced: list[int]) -> None:
    """Sequences/s for 2000 DDPM steps (extrapolated) and respaced DDIM; rounding vs network."""
    from pipeline.models.diffuseq import DecodeConfig

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
    from pipeline.diffusion.rounding import NearestEmbedding

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
    from pipeline.models.diffuseq import DecodeConfig

    model, pairs = make_model(setting)
    model.eval()
    batch = model.collate(pairs[:num_sources])
    seeds, sources = list(range(10)), list(range(num_sources))
    decode = DecodeConfig(sampler="ddim", steps=steps)
    batched = timed(lambda: model.generate(batch, seeds, sources, decode), 1, warmup=0)
    single = timed(lambda: [model.generate(batch, [s], sources, decode) for s in seeds], 1, warmup=0)
    print(f"  seeds  default   10 seeds x {num_sources} sources, DDIM {steps}: batched {batched:.2f} s, "
          f"one seed at a time {single:.2f} s ({single / batched:.1f}x)")


def baseline_seconds(rev: str, name: str, bf16: bool, threads: int, repeats: int) -> float:
    """Seconds per training step of setting `name` with the `pipeline` of git revision `rev`."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "pipeline"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        (Path(tmp) / "bench").mkdir()
        script = shutil.copy(__file__, Path(tmp) / "bench")
        out = subprocess.run([sys.executable, script, "--step-only", name, "--threads", str(threads),
                              "--repeats", str(repeats)] + (["--bf16"] if bf16 else []),
                             check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=sorted(SETTINGS), help="these settings only")
    parser.add_argument("--baseline-rev", help="also time the real step of this git revision")
    parser.add_argument("--step-only", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.step_only:
        print(step_seconds(SETTINGS[args.step_only], args.bf16, repeats))
        return
    bf16 = use_bf16()
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bf16 autocast "
          f"{'on (native bf16)' if bf16 else 'off (no native bf16: it would be emulated)'}")
    start = time.perf_counter()
    for name in args.only or SETTINGS:
        setting = SETTINGS[name]
        print(f"[{name}] release reference: {RELEASE.get(name, 'n/a')}")
        quick_paper = args.quick and name == "paper"  # bert-base: one step is enough
        for precision in (False, True) if bf16 else (False,):
            bench_training(name, setting, 1 if quick_paper else repeats, precision)
        if name in ("default", "reference"):
            bench_sampling(name, setting, 10 if args.quick else 40, [20] if args.quick else [20, 100])
    for precision in (False, True) if bf16 else (False,):
        label = "bf16" if precision else "fp32"
        if "real" in (args.only or SETTINGS):
            print(f"real {label}: step(V=30522) / step(V=1000) = "
                  f"{vocabulary_ratio(precision, repeats):.2f} (timed alternately)")
            print(f"real {label}: {dynamic_length_speedup(precision, repeats)}")
        if args.baseline_rev:  # alternate too: old, new, old, new
            old, new = float("inf"), float("inf")
            for _ in range(2):
                old = min(old, baseline_seconds(args.baseline_rev, "real", precision, args.threads,
                                                repeats))
                new = min(new, step_seconds(REAL, precision, repeats))
            print(f"real {label}: {args.baseline_rev} {old * 1000:.0f} ms/step, this tree "
                  f"{new * 1000:.0f} ms/step ({old / new:.1f}x faster)")
    if not args.only:
        bench_batched_seeds(SETTINGS["default"], 20, 10 if args.quick else 20)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

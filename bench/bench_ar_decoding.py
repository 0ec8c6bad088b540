"""Transformer-base sampling on IWSLT-length sources: this tree's decoder against a baseline commit's.

    python bench/bench_ar_decoding.py [--sources 50] [--max-len 128] [--seeds 1] [--threads 1]
                                      [--baseline acd963a] [--no-baseline]

The paper's Transformer-base (6+6 layers, d_model 512, 8 heads, FFN 2048) over the BERT-uncased
vocabulary (30,522 word pieces, seq_len 128), randomly initialised with a fixed seed, draws one
top-p 0.9 candidate (the paper's candidate search) per source and seed for `--sources` random
sources of 25-30 word pieces (IWSLT14 de-en lengths), at most `--max-len` tokens each; untrained,
it almost never draws EOS, so every candidate runs to max_len (the worst case). Each
implementation runs in its own process (peak RSS is a per-process high-water mark): this tree's
`pipeline`, and the `pipeline` of the baseline commit (default: the last commit before the
key/value cache), extracted with `git archive` into a temporary folder. Prints wall time, peak
RSS and the speed-up, and how far both implementations' candidates agree (same weights, same
seeds; see `agreement`). The machine is shared: compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "acd963a"  # main before the Transformer's key/value cache


def run_child(args: argparse.Namespace) -> None:
    """Build the model, decode, print one JSON line (runs with the chosen `pipeline` on sys.path)."""
    import numpy as np
    import torch

    from pipeline.models import transformer
    from pipeline.models.ar_decoding import DecodeConfig, Search
    from pipeline.models.base import TaskInfo

    torch.set_num_threads(args.threads)
    task = TaskInfo(vocab_size=30522, seq_len=128, pad_id=0, cls_id=101, sep_id=102, unk_id=100,
                    tokenizer_dir="")
    torch.manual_seed(0)
    model = transformer.build(transformer.ModelConfig(
        d_model=512, num_heads=8, num_encoder_layers=6, num_decoder_layers=6, ffn_dim=2048,
        dropout=0.1, label_smoothing=0.1), task).eval()
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(1000, task.vocab_size, rng.integers(25, 31)), np.zeros(0, dtype=np.int64))
             for _ in range(args.sources)]
    decode = DecodeConfig(candidates=Search("sample", top_p=0.9), max_len=args.max_len)
    seeds = list(range(1, args.seeds + 1))
    rss_model = _peak_rss_mb()
    started = time.perf_counter()
    with torch.no_grad():
        ids = model.generate(model.collate(pairs), seeds, list(range(len(pairs))), decode).ids
    seconds = time.perf_counter() - started
    print(json.dumps({
        "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "rss_before_decoding_mb": rss_model,
        "tokens": sum(len(c) for row in ids for c in row),
        "candidates": [c for row in ids for c in row],
        "cpu": torch.backends.cpu.get_cpu_capability(), "code": str(Path(transformer.__file__).parent)}))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def measure(code_root: Path, args: argparse.Namespace) -> dict:
    """Run the child on the `pipeline` package under code_root; its JSON result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--sources", str(args.sources),
               "--max-len", str(args.max_len), "--seeds", str(args.seeds), "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    out = subprocess.run(command, env=env, cwd=code_root, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark child under {code_root} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract_baseline(ref: str, into: Path) -> Path:
    """The `pipeline` package of commit `ref`, extracted under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "pipeline"],
                             capture_output=True)
    if archive.returncode:
        raise RuntimeError(f"git archive {ref} failed: {archive.stderr.decode().strip()}")
    tar_path = into / "baseline.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into


def report(name: str, result: dict) -> None:
    print(f"{name:10s} {result['seconds']:8.1f} s   peak RSS {result['peak_rss_mb']:7.0f} MB "
          f"(model built: {result['rss_before_decoding_mb']:.0f} MB)   {result['tokens']} tokens   "
          f"({result['code']})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=1, help="candidates per source")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline", default=BASELINE, help="git commit of the code to compare with")
    parser.add_argument("--no-baseline", action="store_true", help="time this tree only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    print(f"Transformer-base, V=30522, {args.sources} sources x {args.seeds} seed(s), top-p 0.9, "
          f"max_len {args.max_len}, {args.threads} threads", flush=True)
    current = measure(ROOT, args)
    report("this tree", current)
    print(f"CPU capability: {current['cpu']}")
    if args.no_baseline:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        baseline = measure(extract_baseline(args.baseline, Path(tmp)), args)
    report(args.baseline, baseline)
    print(f"speed-up {baseline['seconds'] / current['seconds']:.1f}x, peak RSS "
          f"{current['peak_rss_mb']:.0f} MB against {baseline['peak_rss_mb']:.0f} MB")
    print(agreement(current["candidates"], baseline["candidates"]))
    return None


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> str:
    """How far the two implementations' candidates agree. Both compute the same function in a
    different float order, so a draw whose uniform falls within rounding of a CDF step can flip
    (near-uniform untrained distributions over 30k words make that likely over thousands of
    draws), and the candidate then continues from a different prefix."""
    prefixes = []
    for a, b in zip(ours, theirs):
        same = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefixes.append(same)
    identical = sum(a == b for a, b in zip(ours, theirs))
    return (f"candidates identical: {identical}/{len(ours)}; tokens drawn identically before the "
            f"first difference: {sum(prefixes)}/{sum(len(a) for a in theirs)}")


if __name__ == "__main__":
    main()

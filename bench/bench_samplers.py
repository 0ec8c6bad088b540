"""Quality and speed of DiffuSeq's samplers on a trained model: DDPM over all T steps against the
release's "DDIM with gap" and the correctly respaced DDIM at 100 and 20 steps.

    python bench/bench_samplers.py [--model results/minipara/diffuseq/model] [--sources 50]

Prints, per sampler, the mean sentence BLEU of single candidates (several seeds) against the test
references, and the wall time; the issue's target is respaced DDIM with 20 steps within 1 BLEU
point of 2000-step DDPM (met by the stochastic one, eta=1). Needs a trained model (run `make demo` first).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's `pipeline`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.data.dataset import load_split, load_tokenizer, read_texts  # noqa: E402
from pipeline.generate import generate_candidates  # noqa: E402
from pipeline.metrics import sentence_bleu  # noqa: E402
from pipeline.models.diffuseq import DecodeConfig  # noqa: E402
from pipeline.models.registry import load_model  # noqa: E402
from pipeline.text import normalize, output_text  # noqa: E402

# (sampler, steps (None: all T), eta): eta=1 is the stochastic DDIM whose variance on the visited
# steps is the DDPM posterior's; eta=0 the deterministic one.
SAMPLERS = [("ddpm", None, 0.0), ("ddim", 100, 1.0), ("ddim", 20, 1.0), ("ddim", 100, 0.0),
            ("ddim", 20, 0.0), ("ddim_gap", 100, 0.0), ("ddim_gap", 20, 0.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/minipara/diffuseq/model")
    parser.add_argument("--data", default="data/processed/minipara")
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(Path(args.model)).eval()
    tokenizer = load_tokenizer(Path(args.data))
    pairs = [(src, np.zeros(0, dtype=np.int64)) for src, _ in load_split(Path(args.data), "test")[:args.sources]]
    refs = [normalize(tokenizer, row["trg"]) for row in read_texts(Path(args.data), "test")[:args.sources]]
    base = model.export_config()["model"]["diffusion_steps"]
    print(f"{args.sources} test sources x seeds {args.seeds}, T={base}, {args.threads} threads")
    for sampler, steps, eta in SAMPLERS:
        decode = dataclasses.replace(DecodeConfig(), sampler=sampler, steps=steps or base, eta=eta)
        started = time.perf_counter()
        out = generate_candidates(model, pairs, args.seeds, decode, args.sources, progress=False)
        seconds = time.perf_counter() - started
        bleu = np.mean([sentence_bleu(ref, output_text(tokenizer, ids))
                        for ref, row in zip(refs, out.ids) for ids in row])
        print(f"{sampler:9s} {decode.steps:5d} steps eta {eta:.0f}: BLEU {bleu:.4f}   {seconds:7.1f} s "
              f"({len(pairs) * len(args.seeds) / seconds:.1f} sequences/s)", flush=True)


if __name__ == "__main__":
    main()

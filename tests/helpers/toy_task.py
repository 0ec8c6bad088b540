"""A prepared toy task (real WordPiece tokenizer, real prepare stage) and a Config around it,
for tests of the train and sample stages with the tiny model family."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import (ComputeConfig, Config, SamplingConfig, SourceConfig, SystemConfig,
                             TaskConfig, TokenizerConfig, TrainConfig)
from pipeline.data.prepare import prepare_task

WORDS = "how do i learn to cook bake swim fast well can you what is the best way".split()
SIZES = {"train": (16, 0), "valid": (4, 1), "test": (6, 2)}  # split -> (examples, word offset)


def _write_split(folder: Path, name: str, n: int, offset: int) -> None:
    """Sources of 3-5 words from WORDS; the target is the source reversed."""
    lines = []
    for i in range(n):
        src = " ".join(WORDS[(i * 3 + offset + k) % len(WORDS)] for k in range(3 + i % 3))
        lines.append(json.dumps({"src": src, "trg": " ".join(reversed(src.split()))}))
    (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def prepare_toy_task(root: Path, tokenizer: TokenizerConfig | None = None) -> TaskConfig:
    """Write root/raw/{train,valid,test}.jsonl and prepare them into root/data (by default with
    a WordPiece tokenizer of 60 pieces trained on them)."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    for name, (n, offset) in SIZES.items():
        _write_split(raw, name, n, offset)
    task = TaskConfig(source=SourceConfig(kind="local", uri=str(raw)), seq_len=24,
                      tokenizer=tokenizer or TokenizerConfig(kind="wordpiece", vocab_size=60),
                      systems=["tiny", "copy", "random"])
    prepare_task("toy", task, raw, root / "data")
    return task


def toy_config(task: TaskConfig, seeds: list[int], train: TrainConfig | None = None) -> Config:
    """Systems "tiny" (the test family), "copy" and "random" (the model-free rows), on CPU."""
    train = train or TrainConfig(steps=1, batch_size=2, micro_batch=2)
    return Config(scale="test", tasks={"toy": task}, sampling=SamplingConfig(seeds, 4, 5),
                  compute=ComputeConfig(device="cpu", threads=1), systems={
                      "tiny": SystemConfig("tiny", train=train,
                                           decode={"max_len": 5, "trace_fractions": [0.5, 1.0]}),
                      "copy": SystemConfig("copy_source"), "random": SystemConfig("random_target")})

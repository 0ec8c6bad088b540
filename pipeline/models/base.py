"""The interface every model family implements, so one trainer and one sampler serve them all.

A family is one module `pipeline/models/<name>.py` that exports `FAMILY`, a `Family` descriptor:
its name (= the module's name), its `ModelConfig` and `DecodeConfig` (frozen dataclasses: the
`model:` and `decode:` blocks of a system in the parameter file), `build(model_cfg, task)` and
`from_export(config)`, whether it trains, how it decodes its quality output and which row of the
paper's Table 1 it stands for. `pipeline.models.registry` finds the families; nothing else has to
be edited to add one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.types import Batch, GenerationOutput, Pair, TaskInfo

__all__ = ["Batch", "Family", "GenerationOutput", "Pair", "Seq2Seq", "TaskInfo",
           "candidate_generator", "describe_decode"]


class Seq2Seq(nn.Module):
    """A sequence-to-sequence model as the shared trainer and sampler see it.

    `collate` turns a list of (source ids, target ids) pairs into tensors; `loss` returns
    per-example terms, "loss" (B,) being the one optimised (the other floating-point terms are
    logged); `generate` returns, for every source of the batch and every seed, the word-piece ids
    of the generated target (no specials). Candidate (source index i, seed s) must depend only on
    the weights, s and i, never on batch composition: draw its randomness from
    `candidate_generator(s, i)`. Every other hook has a default that suits most families.
    """

    def collate(self, pairs: list[Pair]) -> Batch:
        raise NotImplementedError

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, batch: Batch, seeds: list[int], source_indices: list[int],
                 decode: Any) -> GenerationOutput:
        raise NotImplementedError

    def export_config(self) -> dict[str, Any]:
        """The JSON-able configuration saved beside the weights (enough to rebuild the model)."""
        raise NotImplementedError

    def loss_groups(self, terms: dict[str, Tensor]) -> Tensor | None:
        """Group 0..3 of every example of a `loss` result, in which the trainer also logs each
        term (`<term>_q<g>`), e.g. DiffuSeq's timestep quartile. Default: no groups."""
        return None

    def output_tokenizer_dir(self) -> str | None:
        """The tokenizer folder that decodes this model's ids when it is not the task's (e.g. a
        pretrained GPT-2's BPE); its texts are then normalised with the task's tokenizer.
        Default: None, the task's tokenizer."""
        return None

    def is_pretrained(self) -> bool:
        """Whether the weights started from a pretrained model (the table marks a from-scratch
        stand-in for a fine-tuned paper row). Default: False."""
        return False

    def use_training_data(self, train: Sequence[Pair]) -> None:
        """Called by the sample stage for a family that does not train, with the training pairs
        (the random-target floor draws from them). Default: nothing."""


def describe_decode(decode: Any) -> str:
    """A decode config in words, from its scalar fields and nested searches, e.g.
    "sampler=ddim, steps=20, eta=1.0" (families may pass a shorter description to `Family`)."""
    import dataclasses

    if not dataclasses.is_dataclass(decode):
        return ""
    parts = []
    for f in dataclasses.fields(decode):
        value = getattr(decode, f.name)
        if dataclasses.is_dataclass(value):
            parts.append(f"{f.name}: {describe_decode(value)}")
        elif isinstance(value, (str, int, float, bool)) or value is None:
            parts.append(f"{f.name}={value}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Family:
    """One model family: everything the pipeline needs to know of it.

    Attributes:
        name: the `family:` value of a system; must equal the module's name.
        model_config, decode_config: frozen dataclasses of the `model:` and `decode:` blocks.
        build: (model_cfg, task) -> a freshly initialised model.
        from_export: `export_config()` of a saved model -> the model (weights loaded by the caller).
        trains: False for model-free rows (the floors): no train stage, `build` at sampling time.
        quality_decode: decode config -> the deterministic decode whose output is the table's
            quality columns (best.jsonl), or None when the candidates' MBR output is used.
        describe: decode config -> its name in the table's footnote.
        paper_system: the Table 1 row it stands for by default (a system's `paper_system:`
            overrides it), or None.
        matches_paper: model config -> whether it is the paper's model (size, pretraining);
            the table shows the paper's numbers only beside such systems.
        probe_decode: decode config -> a fixed cheap decode whose validation BLEU is recorded at
            every validation step (the convergence figure), or None.
        is_floor: a reference row (copy source, random target): listed last, never bold.
    """

    name: str
    model_config: type
    decode_config: type
    build: Callable[[Any, TaskInfo], Seq2Seq]
    from_export: Callable[[dict[str, Any]], Seq2Seq]
    trains: bool = True
    quality_decode: Callable[[Any], Any] = lambda decode: None
    describe: Callable[[Any], str] = describe_decode
    paper_system: str | None = None
    matches_paper: Callable[[Any], bool] = lambda model_cfg: False
    probe_decode: Callable[[Any], Any] | None = None
    is_floor: bool = False


def candidate_generator(seed: int, source_index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of one candidate: a function of (seed, source index) only."""
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + source_index) % (2**63 - 1))
    return gen

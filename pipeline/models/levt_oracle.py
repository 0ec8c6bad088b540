"""The Levenshtein Transformer's expert policy: the edits that turn a canvas into the target.

Gu et al. (2019), "Levenshtein Transformer", §3.2 (imitation learning with an expert policy).
The expert is read off an optimal edit alignment between the rolled-in sequence `seq` and the
target `trg`. LevT has no substitution, so the alignment is the insertion/deletion-only one
(Indel distance, i.e. a longest common subsequence); rapidfuzz computes it in C on lists of ints.

From that alignment the expert gives, for the three LevT policies:
- deletion: one bool per token of `seq` (True: delete it; the kept tokens are the LCS);
- placeholder insertion: one count per slot of the kept sequence, `len(kept) + 1` slots
  (slot j sits between kept[j-1] and kept[j]; slot 0 after BOS, the last before EOS);
- token prediction: the target itself, the placeholders being exactly the target positions
  that were not kept (`is_placeholder`).
Sequences here are word-piece ids without BOS/EOS; the model adds those around them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapidfuzz.distance import Indel


@dataclass(frozen=True)
class ExpertEdits:
    """The expert's three actions for one (seq, trg) pair."""

    delete: list[bool]            # len(seq)
    insert: list[int]             # len(kept) + 1 placeholder counts
    is_placeholder: list[bool]    # len(trg): positions the token policy must fill
    target: list[int]             # len(trg): the tokens to put there


def expert_edits(seq: list[int], trg: list[int]) -> ExpertEdits:
    """Optimal deletions, placeholder insertions and tokens turning `seq` into `trg`.

    Args:
        seq: the rolled-in canvas, word-piece ids without BOS/EOS.
        trg: the target, word-piece ids without BOS/EOS.

    Returns:
        ExpertEdits; applying `apply_deletions`, `apply_insertions`, `fill_placeholders` in that
        order to `seq` gives exactly `trg`.
    """
    delete = [False] * len(seq)
    is_placeholder = [False] * len(trg)
    kept_before: list[int] = []   # kept tokens among seq[:src_start] at each insert opcode
    insert_at: list[int] = []
    num_kept = 0
    for op in Indel.opcodes(seq, trg):
        if op.tag == "equal":
            num_kept += op.src_end - op.src_start
        elif op.tag == "delete":
            delete[op.src_start:op.src_end] = [True] * (op.src_end - op.src_start)
        elif op.tag == "insert":
            is_placeholder[op.dest_start:op.dest_end] = [True] * (op.dest_end - op.dest_start)
            kept_before.append(num_kept)
            insert_at.append(op.dest_end - op.dest_start)
    insert = [0] * (num_kept + 1)
    for slot, count in zip(kept_before, insert_at):
        insert[slot] += count
    return ExpertEdits(delete, insert, is_placeholder, list(trg))


def apply_deletions(seq: list[int], delete: list[bool]) -> list[int]:
    """The tokens of `seq` whose deletion flag is False, in order."""
    return [tok for tok, drop in zip(seq, delete, strict=True) if not drop]


def apply_insertions(seq: list[int], counts: list[int], placeholder: int) -> list[int]:
    """Insert `counts[j]` placeholders into slot j of `seq` (len(counts) == len(seq) + 1)."""
    if len(counts) != len(seq) + 1:
        raise ValueError(f"{len(counts)} insertion counts for {len(seq)} tokens (need len+1)")
    out = [placeholder] * counts[0]
    for tok, count in zip(seq, counts[1:]):
        out.append(tok)
        out.extend([placeholder] * count)
    return out


def fill_placeholders(canvas: list[int], tokens: list[int], placeholder: int) -> list[int]:
    """Replace every placeholder of `canvas` by the token at the same position of `tokens`."""
    return [new if tok == placeholder else tok for tok, new in zip(canvas, tokens, strict=True)]

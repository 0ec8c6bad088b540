"""Import of checkpoints trained with the authors' DiffuSeq release (docs/diffuseq.md §6), and with its
DiffuSeq-v2 branch (docs/diffuseq-v2.md: the same layout plus the absorbing state `mean_embed`).

A release checkpoint is a PyTorch state dict of the network (names as in `TransformerNet`, plus a
`position_ids` buffer) beside a `training_args.json`. Its `word_embedding.weight` holds EMA weights
but `lm_head.weight` the raw ones; the two are tied, so loading in key order leaves the raw
weights in both, and that is what the authors decoded with. `embedding="raw_lm_head"` (default)
reproduces that; `embedding="ema"` puts the EMA embedding in both instead (not what produced the
paper's samples).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from pipeline.models.base import TaskInfo
from pipeline.models.diffuseq import DiffuSeq, EncoderConfig, ModelConfig

log = logging.getLogger(__name__)

Embedding = Literal["raw_lm_head", "ema"]
TIMESTEP_SAMPLERS = {"lossaware": "loss_aware", "uniform": "uniform"}
IGNORED_KEYS = ("position_ids",)  # the release saves its position-index buffer; ours is rebuilt


def load_release_state_dict(checkpoint: str | Path | dict[str, Tensor]) -> dict[str, Tensor]:
    """The release state dict from a `.pt` file (tensors only, no pickled code) or a dict;
    a DDP `module.` prefix is removed."""
    if isinstance(checkpoint, dict):
        state = checkpoint
    else:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_args(training_args: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(training_args, dict):
        return training_args
    return json.loads(Path(training_args).read_text())


def _num_heads(config_name: str, hidden_size: int) -> int:
    """Attention heads (not visible in weight shapes): from the named config when it can be read
    (local folder or hub cache), else BERT's convention of 64 dimensions per head."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(config_name).num_attention_heads
    except (OSError, ValueError):
        log.warning("config '%s' not readable: assuming %d heads (64 dims each)", config_name,
                    hidden_size // 64)
        return hidden_size // 64


def release_model_config(args: dict[str, Any], state: dict[str, Tensor]) -> ModelConfig:
    """ModelConfig of a release run: sizes from the weights, the rest from training_args."""
    if not args.get("predict_xstart", True) or args.get("learn_sigma", False):
        raise ValueError("only release runs with predict_xstart=true, learn_sigma=false exist in "
                         "the paper; this checkpoint is neither")
    hidden = state["position_embeddings.weight"].shape[1]
    layers = {int(m.group(1)) for k in state if (m := re.match(r"input_transformers\.layer\.(\d+)\.", k))}
    encoder = EncoderConfig(
        num_layers=len(layers), num_heads=_num_heads(args.get("config_name", ""), hidden),
        hidden_size=hidden,
        intermediate_size=state["input_transformers.layer.0.intermediate.dense.weight"].shape[0],
        dropout=float(args.get("dropout", 0.1)),
        max_position=state["position_embeddings.weight"].shape[0])
    return ModelConfig(
        hidden_dim=state["word_embedding.weight"].shape[1],
        hidden_t_dim=state["time_embed.0.weight"].shape[1], encoder=encoder,
        diffusion_steps=int(args["diffusion_steps"]), noise_schedule=args.get("noise_schedule", "sqrt"),
        timestep_sampler=TIMESTEP_SAMPLERS[args.get("schedule_sampler", "lossaware")],
        rescale_timesteps=bool(args.get("rescale_timesteps", True)), use_plm_init=False,
        plm_name=args.get("config_name", "bert-base-uncased"),
        # DiffuSeq-v2 runs: the absorbing state is a weight, the rest are its training args.
        learned_mean_embed="mean_embed" in state, discrete_noise=bool(args.get("denoise", False)),
        discrete_noise_rate=float(args.get("denoise_rate", 0.2)),
        reg_rate=float(args.get("reg_rate", 0.0)) if "mean_embed" in state else 0.0)


def release_task_info(args: dict[str, Any], vocab_size: int, tokenizer_dir: str) -> TaskInfo:
    """TaskInfo from the run's seq_len and the tokenizer's special ids."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return TaskInfo(vocab_size=vocab_size, seq_len=int(args["seq_len"]), pad_id=tok.pad_token_id,
                    cls_id=tok.cls_token_id, sep_id=tok.sep_token_id, unk_id=tok.unk_token_id,
                    tokenizer_dir=str(tokenizer_dir))


def import_release_checkpoint(checkpoint: str | Path | dict[str, Tensor],
                              training_args: str | Path | dict[str, Any],
                              tokenizer_dir: str | Path | None = None, *, task: TaskInfo | None = None,
                              embedding: Embedding = "raw_lm_head") -> DiffuSeq:
    """A DiffuSeq holding a release checkpoint's weights.

    Args:
        checkpoint: path of the release's `.pt` state dict (e.g. ema_0.9999_050000.pt) or the dict.
        training_args: path of its training_args.json or the parsed dict.
        tokenizer_dir: the tokenizer it was trained with (a local folder, or a hub id); default:
            the run's `config_name` (bert-base-uncased in the paper), which needs the hub or its cache.
        task: overrides the TaskInfo built from training_args and the tokenizer.
        embedding: "raw_lm_head" (release behaviour) or "ema" (see module docstring).
    """
    state = load_release_state_dict(checkpoint)
    args = _load_args(training_args)
    vocab_size = state["word_embedding.weight"].shape[0]
    tokenizer = str(tokenizer_dir or args.get("config_name", "bert-base-uncased"))
    task = task or release_task_info(args, vocab_size, tokenizer)
    model = DiffuSeq(release_model_config(args, state), task)
    # Key order matters: word_embedding (EMA) is copied first, then lm_head (raw) overwrites it.
    model.net.load_state_dict({k: v for k, v in state.items() if k not in IGNORED_KEYS})
    if embedding == "ema":
        with torch.no_grad():
            model.net.word_embedding.weight.copy_(state["word_embedding.weight"])
    elif embedding != "raw_lm_head":
        raise KeyError(f"unknown embedding choice '{embedding}' (known: ['ema', 'raw_lm_head'])")
    return model


def import_to_folder(src_ckpt: str | Path, training_args: str | Path, out_dir: str | Path,
                     tokenizer_dir: str | Path | None = None, *,
                     embedding: Embedding = "raw_lm_head") -> Path:
    """Convert a release checkpoint into the project's checkpoint folder (for the sample stage)."""
    from pipeline.checkpoint import save_model

    model = import_release_checkpoint(src_ckpt, training_args, tokenizer_dir, embedding=embedding)
    save_model(model, model.export_config(), Path(out_dir), "diffuseq",
               extra={"imported_from": str(src_ckpt), "embedding": embedding})
    return Path(out_dir)

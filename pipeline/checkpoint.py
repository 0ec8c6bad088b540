"""Model folders and resumable training state: safetensors weights plus JSON, never pickled code.

A model folder (the train stage's output, what `sample` loads) holds
    model.safetensors   the weights (tied weights stored once)
    config.json         {"family", "config": model.export_config(), "step", "provenance"}
and is rebuilt by the family's `from_export(config)` (`pipeline.models.registry.load_model`).

A training state folder (`<state_dir>/step-00001000/`, written by rank 0 only) holds the raw
weights (`model.safetensors`), the EMA weights (`ema.safetensors`, when EMA is on) and `state.pt`:
optimizer state, step, data-order position and every rank's RNG states, as tensors and plain
numbers only, so it loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from pipeline.io import atomic_dir, write_json

LOG = logging.getLogger(__name__)

STATE_NAME = re.compile(r"^step-(\d{8})$")


# --- model folders --------------------------------------------------------------------------------

def save_model(model: torch.nn.Module, export: dict[str, Any], out_dir: Path, family: str,
               extra: dict[str, Any] | None = None) -> None:
    """Write a model folder atomically (see the module docstring for its layout).

    Args:
        model: the model whose current weights are saved (the EMA weights after `fit`).
        export: its `export_config()`.
        family: the family name that rebuilds it.
        extra: provenance recorded under "provenance"; its "step" is copied to the top-level "step".
    """
    extra = dict(extra or {})
    config = {"family": family, "config": export, "step": extra.get("step"), "provenance": extra}
    with atomic_dir(Path(out_dir)) as tmp:
        safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
        write_json(tmp / "config.json", config)


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a model folder: {"family", "config", "step", "provenance"}."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: not a model folder (no config.json)")
    return json.loads(path.read_text())


def load_weights(model: torch.nn.Module, model_dir: Path) -> None:
    """Load a model folder's weights into a rebuilt model, strictly (every key must match)."""
    safetensors.torch.load_model(model, str(Path(model_dir) / "model.safetensors"), strict=True)


def num_parameters(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- RNG states -----------------------------------------------------------------------------------

def capture_rng() -> dict[str, Tensor]:
    """The states of python's, numpy's and torch's global generators, as tensors."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python_version": torch.tensor(version),
        "python_mt": torch.tensor(mt, dtype=torch.int64),
        "python_gauss": torch.tensor([gauss is not None, gauss or 0.0], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": torch.tensor([pos, has_gauss]),
        "numpy_gauss": torch.tensor(cached, dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Tensor]) -> None:
    """Inverse of `capture_rng`."""
    has_gauss, gauss = state["python_gauss"].tolist()
    random.setstate((int(state["python_version"]), tuple(state["python_mt"].tolist()),
                     gauss if has_gauss else None))
    pos, np_has_gauss = state["numpy_pos"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos,
                         np_has_gauss, float(state["numpy_gauss"])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"].cpu()))


# --- training state -------------------------------------------------------------------------------

def claim_state_dir(state_dir: Path, fingerprint: str) -> bool:
    """Make `state_dir` hold only training states of the job identified by `fingerprint`.

    A rerun after a kill finds its own states and resumes; a rerun because the parameters, data or
    code changed must not resume from states of the old job, so those are deleted.

    Returns:
        True if states of another job were discarded.
    """
    marker = Path(state_dir) / "fingerprint.txt"
    stale = marker.is_file() and marker.read_text().strip() != fingerprint
    if stale:
        LOG.warning("%s holds training states of other parameters, data or code: starting afresh",
                    state_dir)
        shutil.rmtree(state_dir)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")
    return stale


def states(state_dir: Path) -> list[Path]:
    """The complete training state folders in `state_dir`, oldest first."""
    return sorted(p for p in Path(state_dir).glob("step-*") if STATE_NAME.match(p.name))


def latest_state(state_dir: Path) -> Path | None:
    """The newest complete training state folder in `state_dir`, or None."""
    found = states(state_dir)
    return found[-1] if found else None


def save_state(state_dir: Path, *, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               ema: dict[str, Tensor] | None, position: int, rng: list[dict[str, Tensor]],
               keep: int = 2, progress: dict[str, Any] | None = None) -> Path:
    """Write `<state_dir>/step-<step>/` atomically and delete all but the newest `keep` states.

    Args:
        ema: EMA weights by parameter name, or None without EMA.
        position: number of training examples consumed so far (the data-order position).
        rng: RNG states of every rank, in rank order (`capture_rng`).
        progress: plain numbers and lists the trainer carries across a resume (training
            seconds, the convergence probe's records).
    """
    target = Path(state_dir) / f"step-{step:08d}"
    with atomic_dir(target) as tmp:
        safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
        if ema is not None:
            safetensors.torch.save_file({k: v.contiguous() for k, v in ema.items()},
                                        str(tmp / "ema.safetensors"))
        torch.save({"step": step, "position": position, "optimizer": optimizer.state_dict(),
                    "rng": rng, "progress": progress or {}}, tmp / "state.pt")
    old = states(state_dir)[:-keep]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return target


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load weights and optimizer state from a state folder into `model` and `optimizer`.

    Returns:
        {"step": int, "position": int, "rng": list of per-rank RNG states,
         "ema": dict of EMA weights or None, "progress": what `save_state` was given}.
    """
    path = Path(path)
    safetensors.torch.load_model(model, str(path / "model.safetensors"), strict=True,
                                 device=str(device))
    state = torch.load(path / "state.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    ema_path = path / "ema.safetensors"
    ema = safetensors.torch.load_file(str(ema_path), device=str(device)) if ema_path.exists() else None
    return {"step": state["step"], "position": state["position"], "rng": state["rng"], "ema": ema,
            "progress": state.get("progress", {})}

"""The one training loop, shared by DiffuSeq and every baseline (after nanoGPT's train.py).

The trainer knows a model only through `pipeline.models.base.Seq2Seq`: `collate(pairs)` makes a
batch and `loss(batch)["loss"]` (B,) is what it minimises (averaged over examples); the other
floating-point per-example terms are logged, overall and per `loss_groups` group. DiffuSeq §4 / docs/diffuseq.md §4 fix the optimiser: AdamW, linear
warmup then linear decay of the learning rate to 0 over `steps`, EMA of the weights.

Batch semantics: `cfg.batch_size` is the global batch of one optimiser step,
micro_batch x accumulation x processes. Gradients are averaged the same way whether the micro-
batches run one after another (accumulation) or side by side (DDP), so both give the same update.

Randomness: `fit` seeds python, numpy and torch from `cfg.seed` (rank r of a data-parallel job
from `cfg.seed + r`, so ranks draw different noise); model initialisation happens before, in the
caller (`train_system` seeds torch from `cfg.seed` before building the model). The data order
depends only on `cfg.seed` (see `DataOrder`). A resumed run restores every generator, so a killed
run continued from its last state ends with exactly the parameters of an uninterrupted one.
Families must keep whatever training state they own (e.g. DiffuSeq's loss-aware timestep history)
in persistent buffers, and must not update it in eval mode (validation runs `loss` in eval mode).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipeline import checkpoint, distributed
from pipeline.config import Config, TrainConfig
from pipeline.models.base import Seq2Seq
from pipeline.types import Batch, Pair

LOG = logging.getLogger(__name__)
KEEP_STATES = 2  # training states kept in state_dir: the newest and one before it


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of `cfg.lr` for update `step` (0-based): linear warmup, then linear decay to 0
    at `cfg.steps` (the release's schedule) or constant."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    return max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.warmup_steps))


def accumulation_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-batches per process per update, so that batch_size = micro_batch x it x world_size."""
    per_round = cfg.micro_batch * world_size
    if cfg.micro_batch < 1 or cfg.batch_size % per_round:
        raise ValueError(f"train.batch_size={cfg.batch_size} is not a multiple of "
                         f"train.micro_batch={cfg.micro_batch} x processes={world_size}")
    return cfg.batch_size // per_round


class DataOrder:
    """Which training examples each update sees: the epochs' permutations laid end to end.

    Epoch e is a permutation drawn from numpy's generator seeded with (seed, e), so the order
    depends on nothing but the seed and the number of examples, and resuming needs only the
    stream position. Global batch k is stream positions [k*B, (k+1)*B); rank r's micro-batch j is
    chunk r*A + j of it (A accumulation steps): DistributedSampler's sharding, without padding.
    """

    def __init__(self, num_examples: int, seed: int) -> None:
        if num_examples < 1:
            raise ValueError("the training set is empty")
        self.num_examples, self.seed = num_examples, seed
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        return self._perm

    def take(self, start: int, count: int) -> np.ndarray:
        """Example indices at stream positions [start, start + count)."""
        chunks = []
        while count > 0:
            epoch, offset = divmod(start, self.num_examples)
            chunk = self._permutation(epoch)[offset:offset + count]
            chunks.append(chunk)
            start, count = start + len(chunk), count - len(chunk)
        return np.concatenate(chunks)


class EMA:
    """Exponential moving average of the parameters: ema <- rate * ema + (1 - rate) * param."""

    def __init__(self, model: nn.Module, rate: float) -> None:
        self.rate = rate
        self.weights = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self.weights[name].mul_(self.rate).add_(p.detach(), alpha=1 - self.rate)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            p.copy_(self.weights[name])


class Probe:
    """A cheap score of the model, taken at every validation step and kept with the training
    state (so a resumed run keeps its earlier records): the convergence record.

    Args:
        score: model -> a number (e.g. validation BLEU of a fixed cheap decode); it must use no
            global random state, so that probing never changes the training run.
    """

    def __init__(self, score: Callable[[Seq2Seq], float]) -> None:
        self.score = score
        self.records: list[dict[str, float]] = []   # {"step", "train_s", "bleu"}


class _LossModule(nn.Module):
    """`model.loss` as a forward(), which is what DDP hooks into to all-reduce gradients."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.model.loss(batch)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _loss_sums(terms: dict[str, Tensor], names: list[str], groups: Tensor | None) -> Tensor:
    """Per-term sums over the batch's examples, overall and by group (e.g. timestep quartile).

    Args:
        groups: (B,) group 0..3 of every example (`Seq2Seq.loss_groups`), or None.
    Returns:
        (K+1, 5): row k is term names[k], the last row counts examples; column 0 sums all
        examples, columns 1..4 the examples of group 0..3 (zero without groups).
    """
    size = terms["loss"].shape[0]
    values = torch.stack([terms[k].detach().float().reshape(-1).expand(size) for k in names]
                         + [torch.ones(size, device=terms["loss"].device)])  # (K+1, B)
    sums = torch.zeros(len(names) + 1, 5, device=values.device)
    sums[:, 0] = values.sum(1)
    if groups is not None:
        sums[:, 1:].index_add_(1, groups.reshape(-1).to(values.device).long().clamp(0, 3), values)
    return sums


def _means(sums: Tensor, names: list[str], prefix: str = "") -> dict[str, float]:
    """Mean of every term, and of every term per timestep quartile that saw examples."""
    sums = sums.cpu()
    out = {f"{prefix}{name}": float(sums[k, 0] / sums[-1, 0]) for k, name in enumerate(names)}
    for q in range(4):
        if sums[-1, q + 1] > 0:
            out.update({f"{prefix}{name}_q{q}": float(sums[k, q + 1] / sums[-1, q + 1])
                        for k, name in enumerate(names)})
    return out


def _term_names(terms: dict[str, Tensor]) -> list[str]:
    """The logged terms: "loss" first, then every other floating-point term."""
    return ["loss"] + sorted(k for k, v in terms.items() if k != "loss" and v.is_floating_point())


@torch.no_grad()
def evaluate(model: Seq2Seq, valid: Sequence[Pair], cfg: TrainConfig, device: torch.device,
             autocast: Any) -> dict[str, float]:
    """Mean loss terms over the first `eval_batches` micro-batches of `valid`, deterministic.

    The model runs in eval mode under torch randomness seeded from `cfg.seed`; the training RNG
    state is restored afterwards, so validating never changes the training run.
    """
    count = min(len(valid), cfg.eval_batches * cfg.micro_batch)
    was_training, names, total = model.training, None, None
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for start in range(0, count, cfg.micro_batch):
            pairs = [valid[i] for i in range(start, min(count, start + cfg.micro_batch))]
            batch = _to_device(model.collate(pairs), device)
            with autocast:
                terms = model.loss(batch)
            names = names or _term_names(terms)
            sums = _loss_sums(terms, names, model.loss_groups(terms))
            total = sums if total is None else total + sums
    model.train(was_training)
    return _means(total, names, "valid_") if total is not None else {}


def _resume(state_dir: Path, model: Seq2Seq, optimizer: torch.optim.Optimizer, ema: EMA | None,
            ctx: distributed.Context, cfg: TrainConfig) -> tuple[int, int, dict[str, Any]]:
    """Load the newest readable training state if any (else seed afresh); returns (step, data
    position, progress). An unreadable state (a disk filled, a file truncated) is skipped with a warning
    for the older one kept beside it; if none can be read, it is an error naming them."""
    found = checkpoint.states(state_dir)
    if not found:
        seed_everything(cfg.seed + ctx.rank)
        return 0, 0, {}
    for path in reversed(found):
        try:
            state = checkpoint.load_state(path, model, optimizer, ctx.device)
            break
        except Exception as exc:  # noqa: BLE001 - any damage to the files
            LOG.warning("training state %s is unreadable (%s: %s); trying the one before it",
                        path, type(exc).__name__, exc)
    else:
        raise RuntimeError(f"no readable training state in {state_dir} "
                           f"({', '.join(p.name for p in found)}); delete it to train from step 0")
    if ema is not None:
        ema.weights = state["ema"] or EMA(model, ema.rate).weights
    if len(state["rng"]) == ctx.world_size:
        checkpoint.restore_rng(state["rng"][ctx.rank])
    else:
        LOG.warning("%s was written by %d processes, this run has %d: random streams restart, "
                    "so the continued run is not bit-identical to an uninterrupted one",
                    path, len(state["rng"]), ctx.world_size)
        seed_everything(cfg.seed + ctx.rank + state["step"])
    LOG.info("resumed from %s (step %d)", path, state["step"])
    return state["step"], state["position"], state["progress"]


def fit(model: Seq2Seq, train: Sequence[Pair], valid: Sequence[Pair] | None, cfg: TrainConfig,
        state_dir: Path, *, device: str = "cpu", log: Callable[..., None] | None = None,
        progress: bool = True, probe: Probe | None = None) -> Seq2Seq:
    """Train `model` for `cfg.steps` updates, resuming from the newest state in `state_dir`.

    Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DDP; every rank must call `fit`.

    Args:
        model: an initialised model (its initialisation is the caller's; seed before building).
        train: (source ids, target ids) pairs; valid: the same for validation, or None.
        cfg: the system's TrainConfig.
        state_dir: where training states are written every `cfg.checkpoint_every` updates and at
            the end (the newest two kept), and resumed from.
        device: `cpu`, `cuda` or `auto`.
        log: `log(step=..., **numbers)`, called on rank 0: every loss term (mean over the global
            batch; per timestep quartile as `<term>_q<i>` when the model reports t), lr,
            grad_norm, tokens_per_s; `valid_<term>` every `cfg.eval_every` updates.
        progress: show a tqdm bar (rank 0).
        probe: scored at every validation step on rank 0 (`valid_bleu` in the log), its record
            (with the training seconds so far, validation and probing excluded) in
            `probe.records`.

    Returns:
        The trained model, carrying the EMA weights when `cfg.ema_rate` is set.

    Raises:
        FloatingPointError: a non-finite loss or gradient; no update is applied and the newest
            state in `state_dir` is the last good one.
    """
    ctx = distributed.init(device)
    accumulation = accumulation_steps(cfg, ctx.world_size)
    model.to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_rate) if cfg.ema_rate is not None else None
    step, position, carried = _resume(state_dir, model, optimizer, ema, ctx, cfg)
    train_s = carried.get("train_s", 0.0)
    if probe is not None:
        probe.records = list(carried.get("probes", []))
    trainer: nn.Module = _LossModule(model)
    if ctx.world_size > 1:
        trainer = DistributedDataParallel(trainer, find_unused_parameters=True,
                                          device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    order = DataOrder(len(train), cfg.seed)
    autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16,
                              enabled=cfg.precision == "bf16" and distributed.bf16_pays(ctx.device))
    params = [p for p in model.parameters() if p.requires_grad]
    names = None
    log = log if (log is not None and ctx.is_main) else (lambda **_: None)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not (progress and ctx.is_main))
    model.train()
    while step < cfg.steps:
        started = time.perf_counter()
        lr = cfg.lr * lr_factor(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = order.take(position, cfg.batch_size)
        sums, tokens = 0, 0
        for j in range(accumulation):
            chunk = indices[(ctx.rank * accumulation + j) * cfg.micro_batch:][:cfg.micro_batch]
            pairs = [train[int(i)] for i in chunk]
            batch = _to_device(model.collate(pairs), ctx.device)
            # DDP all-reduces gradients only on the last micro-batch of the update.
            is_last = j == accumulation - 1
            with trainer.no_sync() if ctx.world_size > 1 and not is_last else contextlib.nullcontext():
                with autocast:
                    terms = trainer(batch)
                (terms["loss"].float().mean() / accumulation).backward()
            names = names or _term_names(terms)
            sums = sums + _loss_sums(terms, names, model.loss_groups(terms))
            tokens += sum(len(src) + len(trg) for src, trg in pairs)
        grad_norm = float(nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf))
        totals = distributed.all_reduce_sum(torch.cat([sums.flatten(), sums.new_tensor([tokens])]))
        metrics = _means(totals[:-1].view_as(sums), names)
        if not (math.isfinite(metrics["loss"]) and math.isfinite(grad_norm)):
            raise FloatingPointError(
                f"non-finite loss ({metrics['loss']}) or gradient norm ({grad_norm}) at step "
                f"{step + 1}; stopped without applying it. Last good state: "
                f"{checkpoint.latest_state(state_dir)}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        step, position = step + 1, position + cfg.batch_size
        train_s += time.perf_counter() - started
        log(step=step, lr=lr, grad_norm=grad_norm,
            tokens_per_s=float(totals[-1]) / (time.perf_counter() - started), **metrics)
        if valid is not None and len(valid) and cfg.eval_every and step % cfg.eval_every == 0:
            log(step=step, **evaluate(model, valid, cfg, ctx.device, autocast))
            if probe is not None and ctx.is_main:
                probe.records.append({"step": step, "train_s": round(train_s, 3),
                                      "bleu": probe.score(model)})
                log(step=step, valid_bleu=probe.records[-1]["bleu"])
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            rng = distributed.all_gather_objects(checkpoint.capture_rng())
            if ctx.is_main:
                checkpoint.save_state(state_dir, step=step, model=model, optimizer=optimizer,
                                      ema=ema.weights if ema else None, position=position,
                                      rng=rng, keep=KEEP_STATES, progress={
                                          "train_s": train_s,
                                          "probes": probe.records if probe else []})
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
    bar.close()
    if ema is not None:
        ema.copy_to(model)
    return model


def train_system(cfg: Config, task: str, system: str, data_dir: Path, out_dir: Path,
                 state_dir: Path, log: Callable[..., None] | None = None) -> None:
    """The train stage: build the system's model, `fit` it, and save the model folder (rank 0).

    Args:
        data_dir: the task's prepared data (data/processed/<task>).
        out_dir: the model folder to write (`checkpoint.save_model`, EMA weights when EMA is on).
        state_dir: resumable training states, kept across reruns.
        log: the tracking callback (rank 0).
    """
    from pipeline.data.dataset import load_split, load_task_info
    from pipeline.models.registry import get_family, system_configs

    from pipeline.probe import convergence_probe

    sys_cfg = cfg.systems[system]
    if sys_cfg.train is None:
        raise ValueError(f"systems.{system}: family '{sys_cfg.family}' has no train block")
    family = get_family(sys_cfg.family)
    model_cfg, decode = system_configs(sys_cfg, f"systems.{system}")
    task_info = load_task_info(data_dir)
    ctx = distributed.init(cfg.compute.device)
    torch.set_num_threads(max(1, cfg.compute.threads // ctx.world_size))
    torch.manual_seed(sys_cfg.train.seed)  # the same initial weights on every rank and rerun
    model = family.build(model_cfg, task_info)
    num_params = checkpoint.num_parameters(model)
    LOG.info("%s/%s: %s model with %d parameters", task, system, sys_cfg.family, num_params)
    probe = convergence_probe(family, sys_cfg, decode, data_dir) if ctx.is_main else None
    model = fit(model, load_split(data_dir, "train"), load_split(data_dir, "valid"), sys_cfg.train,
                Path(state_dir), device=cfg.compute.device, log=log, probe=probe)
    if ctx.is_main:
        state = checkpoint.latest_state(state_dir)
        checkpoint.save_model(model, model.export_config(), out_dir, family.name, extra={
            "task": task, "system": system, "step": sys_cfg.train.steps,
            "num_parameters": num_params, "ema_rate": sys_cfg.train.ema_rate,
            "training_state": str(state), "convergence": probe.records if probe else []})
        LOG.info("saved %s (from training state %s)", out_dir, state)
        if log is not None:
            log(step=sys_cfg.train.steps, num_parameters=num_params)
    distributed.barrier()
    distributed.shutdown()

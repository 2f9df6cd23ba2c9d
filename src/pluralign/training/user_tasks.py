"""Meta-training NP-BTL (and the BTL baseline) on tasks drawn from users of hidden types, and evaluating them.

A *task* is one user type and ``num_targets`` of its choices; a random ``k``-subset of them (k uniform in
``min_context..max_context``) is the context. The loss is the negative log-likelihood of the target choices
given z (METHODS.md §5), plus ``beta_kl * KL(q(z|C) || q(z|T))`` on the optional latent path.
Evaluation scores target pairs that are NOT in the context.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pluralign.errors import DataError
from pluralign.models.embeddings import DEFAULT_ENCODER, Embedder
from pluralign.models.manifest import Manifest
from pluralign.models.neural_process import NPConfig, save_module
from pluralign.models.state import is_main_process, wait_for_everyone
from pluralign.objectives.trained import record_held_out_accuracy
from pluralign.training.user_pairs import PairwiseRewardDataConfig, UserPairs


class TaskSampler:
    """Draws batches of tasks (one user type each) with a random context size, as tensors."""

    def __init__(
        self,
        users: Mapping[str, UserPairs],
        num_targets: int = 20,
        min_context: int = 0,
        max_context: int = 10,
        seed: int = 0,
    ) -> None:
        if not users:
            raise DataError("no user types to train on; the dataset needs at least one labelled attribute or user")
        small = [name for name, u in users.items() if len(u) < num_targets]
        if small:
            raise DataError(
                f"user type {small[0]!r} has {len(users[small[0]])} pairs, fewer than num_targets={num_targets}; "
                "lower --num_targets or add data"
            )
        if not 0 <= min_context <= max_context <= num_targets:
            raise DataError("context sizes must satisfy 0 <= min_context <= max_context <= num_targets")
        self.users = list(users.values())
        self.num_targets = num_targets
        self.min_context = min_context
        self.max_context = max_context
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        t, kmax = self.num_targets, self.max_context
        types = self.rng.integers(len(self.users), size=batch_size)
        sizes = self.rng.integers(self.min_context, self.max_context + 1, size=batch_size)
        dim = self.users[0].chosen.shape[-1]
        chosen_t = torch.empty(batch_size, t, dim, dtype=self.users[0].chosen.dtype)
        rejected_t = torch.empty_like(chosen_t)
        for u in np.unique(types):  # every task of one user type at once: t distinct pairs per task
            rows = torch.from_numpy(np.flatnonzero(types == u))
            idx = torch.from_numpy(self.rng.random((len(rows), len(self.users[u]))).argsort(axis=1)[:, :t])
            chosen_t[rows] = self.users[u].chosen[idx]
            rejected_t[rows] = self.users[u].rejected[idx]
        # the context is the first k targets of each (already shuffled) task
        context = torch.stack([chosen_t[:, :kmax], rejected_t[:, :kmax]], dim=2)
        mask = torch.arange(kmax).unsqueeze(0) < torch.from_numpy(sizes).unsqueeze(1)
        return {"chosen": chosen_t, "rejected": rejected_t, "context": context, "context_mask": mask}


def task_loss(model: nn.Module, batch: dict[str, torch.Tensor], beta_kl: float = 0.0) -> torch.Tensor:
    """Per task the mean NLL of its target choices, plus ``beta_kl * KL(q(z|C) || q(z|T))`` on the latent
    path (the reference's loss: the KL is added once per task, not divided by the number of targets),
    averaged over the batch of tasks."""
    if not hasattr(model, "context_encoder"):
        return -F.logsigmoid(model(batch["chosen"], batch["rejected"])).mean()
    margins = model(batch["context"], batch["context_mask"], batch["chosen"], batch["rejected"])
    loss = -F.logsigmoid(margins).mean()
    if beta_kl > 0 and model.cfg.latent:
        target = torch.stack([batch["chosen"], batch["rejected"]], dim=2)
        full = torch.ones(target.shape[:2], dtype=torch.bool)
        loss = loss + beta_kl * model.kl_term(batch["context"], batch["context_mask"], target, full).mean()
    return loss


def train_tasks(
    model: nn.Module,
    sampler: TaskSampler,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-4,
    beta_kl: float = 0.0,
    progress: Callable[[int, float], None] | None = None,
    log_every: int = 100,
    schedule: str = "constant",
    weight_decay: float = 0.0,
    validate: Callable[[nn.Module], float] | None = None,
    eval_every: int = 50,
    patience: int = 5,
) -> dict[str, float]:
    """Adam (AdamW with ``weight_decay``) on the task NLL; the BTL baseline (no ``context_encoder``) sees the
    same targets without context.

    ``schedule="cosine"`` decays the learning rate to zero over ``steps`` (a steadier final model).
    ``validate(model) -> loss`` (lower is better), called every ``eval_every`` steps, keeps the best weights
    and stops after ``patience`` evaluations without improvement (early stopping on a validation split).

    Returns ``{"train_seconds", "cpu_seconds", "final_loss"}`` (cpu: this process, all threads), plus
    ``best_step`` and ``validation_loss`` when validating.

    Under ``accelerate launch`` (several processes) it is data parallel: rank 0's initial weights are
    broadcast, each process samples its own tasks and gradients are averaged before every step.
    """
    sync = _gradient_sync(model, sampler)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown schedule {schedule!r}; use constant or cosine")
    decay = (lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))) if schedule == "cosine" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, decay)
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    running = float("nan")
    best: tuple[float, int, dict] | None = None
    waited = 0
    for step in range(1, steps + 1):
        loss = task_loss(model, sampler.sample(batch_size), beta_kl)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        optimiser.step()
        scheduler.step()
        running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
        if progress and (step % log_every == 0 or step == steps):
            progress(step, running)
        if validate is not None and (step % eval_every == 0 or step == steps):
            val = validate(model)
            model.train()
            if best is None or val < best[0]:
                best, waited = (val, step, copy.deepcopy(model.state_dict())), 0
            else:
                waited += 1
                if waited >= patience:
                    break
    out = {"train_seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
           "final_loss": running}  # fmt: skip
    if best is not None:
        model.load_state_dict(best[2])
        out |= {"best_step": best[1], "validation_loss": best[0], "stopped_step": step}
    model.eval()
    return out


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    users: Mapping[str, UserPairs],
    contexts: Mapping[str, UserPairs] | None = None,
    context_size: int = 0,
    seed: int = 0,
) -> float:
    """Mean Bradley-Terry NLL of the validation pairs. NP-BTL: the mean of its loss for the default user
    (k = 0) and for a user known by ``context_size`` of that user type's choices in ``contexts`` (the
    training pairs), so early stopping watches the few-shot use as well as the context-free one."""
    model.eval()
    conditional = hasattr(model, "context_encoder")
    sizes = [0] + ([context_size] if conditional and contexts and context_size > 0 else [])
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for name, u in users.items():
        chosen, rejected = u.chosen.unsqueeze(0), u.rejected.unsqueeze(0)
        for k in sizes:
            if not conditional:
                margins = model(chosen, rejected)
            else:
                context = chosen.new_zeros(1, 0, 2, chosen.shape[-1])
                if k and name in contexts:
                    source = contexts[name]
                    idx = torch.randperm(len(source), generator=generator)[:k]
                    context = torch.stack([source.chosen[idx], source.rejected[idx]], dim=1).unsqueeze(0)
                margins = model(context, torch.ones(1, context.shape[1], dtype=torch.bool), chosen, rejected)
            losses.append(F.softplus(-margins).mean())
    return float(torch.stack(losses).mean())


def _gradient_sync(model: nn.Module, sampler: TaskSampler) -> Callable[[], None]:
    """With several processes: same start on every rank, a per-rank task stream, and a gradient all-reduce."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return lambda: None
    world, rank = dist.get_world_size(), dist.get_rank()
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    sampler.rng = np.random.default_rng([sampler.seed, rank])

    def sync() -> None:
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= world

    return sync


@torch.no_grad()
def accuracy_by_context_size(
    model: nn.Module,
    users: Mapping[str, UserPairs],
    ks: list[int],
    repeats: int = 1000,
    num_targets: int = 20,
    seed: int = 0,
    chunk: int = 250,
) -> dict[int, float]:
    """Accuracy (%) on target pairs NOT in the context, by context size k, averaged over user types.

    Each of ``repeats`` tasks per type draws k + ``num_targets`` distinct held-out pairs of that type: the
    first k are the context, the rest are scored. Many small tasks keep the estimate's noise (which comes
    mostly from how informative the drawn context is) low.
    """
    conditional = hasattr(model, "context_encoder")
    model.eval()
    rng = np.random.default_rng(seed)
    out: dict[int, float] = {}
    for k in ks:
        accs = []
        for u in users.values():
            n = len(u)
            if n < k + num_targets:
                raise DataError(
                    f"an evaluation user type has {n} pairs; need at least k + num_targets = {k + num_targets}"
                )
            for start in range(0, repeats, chunk):
                r = min(chunk, repeats - start)
                idx = torch.from_numpy(rng.random((r, n)).argsort(axis=1)[:, : k + num_targets]).long()
                chosen, rejected = u.chosen[idx[:, k:]], u.rejected[idx[:, k:]]
                if conditional:
                    context = torch.stack([u.chosen[idx[:, :k]], u.rejected[idx[:, :k]]], dim=2)
                    margins = model(context, torch.ones(r, k, dtype=torch.bool), chosen, rejected)
                else:
                    margins = model(chosen, rejected)
                accs.append((margins > 0).float().mean(dim=1))
        out[k] = 100.0 * torch.cat(accs).mean().item()
    return out


def embedding_record(cfg: PairwiseRewardDataConfig, embedder: Embedder) -> dict:
    """How to rebuild the features at inference (the default encoder is stored by name, not local path)."""
    model = cfg.embedding_model if cfg.embedding_model in (DEFAULT_ENCODER, "default") else embedder.model_name
    return {"model": model, "pooling": embedder.pooling, "max_length": cfg.max_length, "dim": embedder.dim,
            "layer": embedder.layer}  # fmt: skip


def save_pairwise_reward_model(
    method: str,
    model: torch.nn.Module,
    np_cfg: NPConfig,
    weights: str,
    cfg: PairwiseRewardDataConfig,
    embedder: Embedder,
    train: dict,
    held_pairs: Sequence,
    stats: dict,
    accuracy_extra: dict,
    progress: Callable[[str], None],
) -> Path:
    """Write a BTL / NP-BTL reward model (weights, manifest, held-out accuracy) to ``cfg.output_dir``."""
    out = Path(cfg.output_dir)
    train_seconds = round(stats["train_seconds"], 1)
    if is_main_process():
        save_module(model, np_cfg, out, weights)
        Manifest(
            method=method,
            objectives=list(train),
            extra={
                "embedding": embedding_record(cfg, embedder),
                "user_types": list(train),
                "train_seconds": train_seconds,
                **accuracy_extra,
                "config": json.loads(json.dumps(vars(cfg), default=str)),
            },
        ).save(out)
        extra = {"train_pairs": sum(map(len, train.values())), "train_seconds": train_seconds}
        if "best_step" in stats:
            extra |= {"best_step": stats["best_step"], "stopped_step": stats["stopped_step"]}
        cache = {"embedding_cache": cfg.embedding_cache} if cfg.embedding_cache else None  # its features are there
        record_held_out_accuracy(out, held_pairs, extra, progress, cache)
    wait_for_everyone()
    progress(f"saved {'NP-BTL' if method == 'npbtl' else method.upper()} reward model to {out}")
    return out


def train_on_user_tasks(
    model: nn.Module,
    train: Mapping[str, UserPairs],
    cfg: PairwiseRewardDataConfig,
    progress: Callable[[str], None],
    min_context: int = 0,
    max_context: int = 0,
    beta_kl: float = 0.0,
    validation: Mapping[str, UserPairs] | None = None,
) -> dict:
    """Meta-train ``model`` on tasks drawn from ``train``'s users with ``cfg``'s budget (BTL: no context);
    with ``validation`` pairs, keep the weights of the lowest validation loss and stop early."""
    sampler = TaskSampler(train, cfg.num_targets, min_context, max_context, seed=cfg.seed)
    stats = train_tasks(
        model,
        sampler,
        cfg.max_steps,
        cfg.batch_tasks,
        cfg.learning_rate,
        beta_kl,
        progress=lambda step, loss: progress(f"step {step}/{cfg.max_steps} loss {loss:.4f}"),
        weight_decay=cfg.weight_decay,
        validate=(lambda m: validation_loss(m, validation, train, max_context, cfg.seed)) if validation else None,
        eval_every=cfg.eval_every,
        patience=cfg.early_stopping_patience,
    )
    if "best_step" in stats:
        progress(f"kept step {stats['best_step']} (validation loss {stats['validation_loss']:.4f}); "
                 f"stopped at step {stats['stopped_step']}")  # fmt: skip
    return stats


def held_out_accuracy(
    model: nn.Module, held: Mapping[str, UserPairs], context_sizes: Sequence[int], seed: int
) -> dict[int, float]:
    """Pairwise accuracy (%) on the held-out pairs for every context size k each held-out user can fill."""
    if not held:
        return {}
    ks = [k for k in context_sizes if all(len(u) >= k + 1 for u in held.values())]
    n_targets = max(1, min(20, min(len(u) for u in held.values()) - max(ks, default=0)))
    return accuracy_by_context_size(model, held, ks, repeats=200, num_targets=n_targets, seed=seed)

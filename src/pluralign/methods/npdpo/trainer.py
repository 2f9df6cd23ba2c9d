"""NPDPOTrainer: TRL's DPOTrainer with the policy conditioned on each row's context latent z.

Only what NP-DPO changes is overridden: the collator adds the context features, the loss runs the policy
under FiLM(z) with z = context_encoder(context) (so the encoder learns through the DPO loss), and the
reference pass runs unconditioned. TRL's loss sums log-probabilities over completion tokens only
(``completion_mask``), never over the prompt or padding.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from trl import DPOTrainer

from pluralign.data.attributes import group_by_attribute
from pluralign.methods.npdpo.config import NPDPOConfig
from pluralign.methods.npdpo.data import CONTEXT_COLUMN, ContextPreferenceCollator, pair_table, training_rows
from pluralign.methods.npdpo.film import FiLM
from pluralign.models.embeddings import DEFAULT_ENCODER, Embedder
from pluralign.models.loading import check_model_source, load_error
from pluralign.models.manifest import Manifest
from pluralign.models.neural_process import ContextEncoder, NPConfig, save_module
from pluralign.models.sequences import trl_pair
from pluralign.models.state import shared_dataset
from pluralign.training.progress import library_bars_off, use_progress_lines
from pluralign.training.user_pairs import choice_pairs

NP_KEYS = ("np_context", "np_context_mask")


class NPDPOTrainer(DPOTrainer):
    def __init__(
        self,
        *args: Any,
        context_encoder: ContextEncoder,
        film: FiLM,
        context_table: torch.Tensor,
        processing_class=None,
        **kwargs: Any,
    ) -> None:
        pad_id = (
            processing_class.pad_token_id
            if processing_class.pad_token_id is not None
            else processing_class.eos_token_id
        )
        args_ = kwargs.get("args")
        kwargs.setdefault(
            "data_collator",
            ContextPreferenceCollator(
                pad_token_id=pad_id, max_length=getattr(args_, "max_length", None), table=context_table
            ),
        )
        # set before TRL's __init__, which may already run the (unconditioned) reference pass
        self.context_encoder = context_encoder
        self.film = film
        super().__init__(*args, processing_class=processing_class, **kwargs)
        # Registered on the policy so Trainer's optimiser trains them with the LM (or its LoRA adapters)
        self.model.add_module("npdpo_context_encoder", context_encoder)
        self.model.add_module("npdpo_film", film)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """TRL's optimiser; the NP modules get their own learning rate when ``np_learning_rate`` is set."""
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        lr = getattr(self.args, "np_learning_rate", None)
        if lr is None:
            return optimizer
        np_params = [p for m in (self.context_encoder, self.film) for p in m.parameters() if p.requires_grad]
        np_ids = {id(p) for p in np_params}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in np_ids]
        optimizer.add_param_group({"params": np_params, "lr": lr, "weight_decay": 0.0})
        return optimizer

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if CONTEXT_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, CONTEXT_COLUMN]

    def latent(self, inputs: dict[str, Any]) -> torch.Tensor:
        device = next(self.context_encoder.parameters()).device
        return self.context_encoder(inputs["np_context"].to(device), inputs["np_context_mask"].to(device))

    def _compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool):
        z = self.latent(inputs)
        inputs = {k: v for k, v in inputs.items() if k not in NP_KEYS}
        # the batch is [chosen rows; rejected rows]: both halves see their row's z
        with self.film.condition(torch.cat([z, z], dim=0)):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model: nn.Module, inputs: dict[str, Any]):
        inputs = {k: v for k, v in inputs.items() if k not in NP_KEYS}
        with self.film.condition(None):
            return super().compute_ref_log_probs(model, inputs)


CONTEXT_WEIGHTS = "npdpo_context"
FILM_WEIGHTS = "npdpo_film"


def save_film(film: FiLM, directory: Path) -> None:
    from safetensors.torch import save_file

    save_file(
        {k: v.detach().contiguous().cpu() for k, v in film.state_dict().items()},
        directory / f"{FILM_WEIGHTS}.safetensors",
    )
    (directory / f"{FILM_WEIGHTS}.json").write_text(json.dumps(film.config_dict(), indent=2))


def train_npdpo(cfg: NPDPOConfig, progress: Callable[[str], None] = print) -> Path:
    """Train and save an NP-DPO policy; returns the model directory (loadable by ``load_policy``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg.require()
    torch.manual_seed(cfg.seed)
    model_path = check_model_source(cfg.model_name_or_path, what="starting model")
    pairs = choice_pairs(cfg)
    groups = {name: list(g)[: cfg.max_pairs_per_type] for name, g in group_by_attribute(pairs).items()}
    progress("user types: " + ", ".join(f"{n} ({len(g)} pairs)" for n, g in groups.items()))
    embedder = Embedder(
        cfg.embedding_model,
        pooling=cfg.embedding_pooling,
        cache_dir=cfg.embedding_cache,
        max_length=cfg.embedding_max_length,
        trust_remote_code=cfg.trust_remote_code if hasattr(cfg, "trust_remote_code") else False,
    )
    all_pairs, table = pair_table(embedder, groups)
    rows = training_rows(all_pairs, cfg.min_context, cfg.max_context, cfg.contexts_per_pair, seed=cfg.seed)
    progress(f"{len(rows)} training rows (target pair + context of k in {cfg.min_context}..{cfg.max_context})")

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path)
        ref_model = None if cfg.precompute_ref_log_probs else AutoModelForCausalLM.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise load_error(model_path, "starting model", exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # one BOS and the one join rule, as generation and the evaluation's log-probabilities see them
    rows = [{**r, **trl_pair(tokenizer, r["prompt"], r["chosen"], r["rejected"])} for r in rows]
    np_cfg = NPConfig(
        input_dim=int(table.shape[-1]),
        hidden_dim=cfg.np_hidden_dim,
        latent_dim=cfg.np_hidden_dim,
        num_heads=cfg.np_num_heads,
    )
    context_encoder = ContextEncoder(np_cfg)
    film = FiLM.for_model(model, cfg.np_hidden_dim).attach(model)
    with library_bars_off(cfg):
        trainer = NPDPOTrainer(
            model=model,
            ref_model=ref_model,
            args=cfg,
            train_dataset=shared_dataset(rows, Path(cfg.output_dir) / ".dataset"),
            processing_class=tokenizer,
            peft_config=cfg.peft_config(),
            context_encoder=context_encoder,
            film=film,
            context_table=table,
        )
    use_progress_lines(trainer, prefix="npdpo: ")
    trainer.train()

    out = Path(cfg.output_dir)
    if trainer.accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        policy = trainer.model
        for name in ("npdpo_context_encoder", "npdpo_film"):
            del policy._modules[name]
        if hasattr(policy, "merge_and_unload"):
            policy = policy.merge_and_unload()
        film.detach()
        policy.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        save_module(context_encoder, np_cfg, out, CONTEXT_WEIGHTS)
        save_film(film, out)
        bank = {
            name: [[p["prompt"], p["chosen"], p["rejected"]] for p in g[: cfg.context_bank_size]]
            for name, g in groups.items()
        }
        embedding_model = (
            cfg.embedding_model if cfg.embedding_model in (DEFAULT_ENCODER, "default") else embedder.model_name
        )
        Manifest(
            method="npdpo",
            objectives=list(groups),
            base_model=cfg.model_name_or_path,
            extra={
                "embedding": {
                    "model": embedding_model,
                    "pooling": embedder.pooling,
                    "max_length": cfg.embedding_max_length,
                },
                "user_types": list(groups),
                "context_bank": bank,
                "beta": cfg.beta,
                "max_context": cfg.max_context,
            },
        ).save(out)
        shutil.rmtree(out / ".dataset", ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    progress(f"saved NP-DPO policy to {out}")
    return out

"""Training NP-DPO end to end: users' pairs -> context features -> NPDPOTrainer -> a steerable model dir.

The saved directory holds the LM (LoRA merged) and tokenizer, ``npdpo_context.safetensors`` / ``.json``
(the context encoder), ``npdpo_film.safetensors`` / ``.json`` (the FiLM maps) and ``pluralign.json``
(method "npdpo", the user types, the context features' encoder, and a small bank of example choices per
user type so that a preference vector can be turned into a context).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from pluralign.data.attributes import attribute_pairs, group_by_attribute
from pluralign.embeddings import DEFAULT_ENCODER, Embedder
from pluralign.hub import check_model_source, load_error
from pluralign.manifest import Manifest
from pluralign.methods.npbtl.modules import ContextEncoder, NPConfig, save_module
from pluralign.methods.npdpo.config import NPDPOConfig
from pluralign.methods.npdpo.data import pair_table, training_rows
from pluralign.methods.npdpo.film import FiLM
from pluralign.trainer_logging import library_bars_off, use_progress_lines
from pluralign.training_args import shared_dataset

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

    from pluralign.methods.npdpo.trainer import NPDPOTrainer

    cfg.require()
    torch.manual_seed(cfg.seed)
    model_path = check_model_source(cfg.model_name_or_path, what="starting model")
    pairs = attribute_pairs(
        cfg.dataset,
        attributes=cfg.attributes or None,
        format=cfg.format,
        conflicting_only=cfg.conflicting_only,
        prompt_column=cfg.prompt_column,
    )
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

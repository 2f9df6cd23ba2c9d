"""A trained NP-DPO policy: ``generate(prompts, context=[(prompt, chosen, rejected), ...])``.

z = context_encoder(features of the user's choices) conditions the LM through FiLM. Without a context the
policy writes for its learnt default user (k = 0). A ``preference`` over the user types is turned into a
context: the model directory keeps a few example choices per type, and w_i * k of them are drawn from
type i (k = the bank size), so the evaluator's preference grid works for NP-DPO too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pluralign.errors import ModelNotFoundError
from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import PreferenceLike, SteerablePolicy
from pluralign.methods.npdpo.evaluation import response_logprobs
from pluralign.methods.npdpo.film import FiLM, FiLMConfig
from pluralign.methods.npdpo.trainer import CONTEXT_WEIGHTS, FILM_WEIGHTS
from pluralign.models.embeddings import Embedder
from pluralign.models.manifest import Manifest
from pluralign.models.neural_process import ContextEncoder, load_module
from pluralign.preferences.inference import context_tensor


class NPDPOPolicy(SteerablePolicy):
    def __init__(
        self,
        model,
        tokenizer,
        context_encoder: ContextEncoder,
        film: FiLM,
        embedder: Embedder,
        manifest: Manifest,
        model_dir: Path,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.context_encoder = context_encoder.eval()
        self.film = film.attach(model)
        self.embedder = embedder
        self.manifest = manifest
        self.model_dir = model_dir

    @torch.no_grad()
    def latent(self, context: Sequence[Any] | None) -> torch.Tensor:
        """z (1, latent) of a user's choices; the learnt default user when ``context`` is None."""
        pairs = context_tensor(context, self.embedder, self.context_encoder.cfg.input_dim)
        device = next(self.model.parameters()).device
        self.context_encoder.to(device)
        self.film.to(device)
        return self.context_encoder(pairs.to(device), torch.ones(pairs.shape[:2], dtype=torch.bool, device=device))

    def context_for_preference(self, preference: PreferenceLike) -> list[tuple]:
        """Example choices mixed in proportion to the weights (largest remainder over the bank size)."""
        pref = self.resolve_preference(preference)
        bank = self.manifest.extra.get("context_bank", {})
        k = min(len(bank.get(n, [])) for n in self.objectives)
        w = np.asarray(pref.weights)
        counts = np.floor(w * k).astype(int)
        for i in np.argsort(-(w * k - counts))[: k - counts.sum()]:
            counts[i] += 1
        context = [tuple(c) for n, c_n in zip(self.objectives, counts) for c in bank[n][:c_n]]
        return context

    def _context(self, preference: PreferenceLike | None, context: Sequence[Any] | None) -> Sequence[Any] | None:
        self._check_steering(preference, context)
        if preference is not None:
            return self.context_for_preference(preference) or None
        return context

    def generate(
        self,
        prompts: Sequence[Any],
        preference: PreferenceLike | None = None,
        context: Sequence[Any] | None = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        z = self.latent(self._context(preference, context))
        with self.film.condition(z):
            return generate_batched(self.model, self.tokenizer, list(prompts), **generation_kwargs)

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        """Prompts sharing a preference are generated together (one z per preference)."""
        groups: dict[Any, list[int]] = {}
        for i, w in enumerate(preferences):
            key = None if w is None else self.resolve_preference(w).weights
            groups.setdefault(key, []).append(i)
        out = [""] * len(prompts)
        for key, idx in groups.items():
            texts = self.generate(
                [prompts[i] for i in idx], preference=None if key is None else list(key), **generation_kwargs
            )
            for i, t in zip(idx, texts):
                out[i] = t
        return out

    @torch.no_grad()
    def log_probs(
        self, prompts: Sequence[str], responses: Sequence[str], context: Sequence[Any] | None = None
    ) -> list[float]:
        """Sum of log pi(response | prompt, z) over response tokens, z from ``context``."""
        with self.film.condition(self.latent(context)):
            return response_logprobs(self.model, self.tokenizer, prompts, responses)


def load(model_dir: Path, manifest: Manifest, device: str | None = None, **kwargs: Any) -> NPDPOPolicy:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    film_file = model_dir / f"{FILM_WEIGHTS}.safetensors"
    if not film_file.is_file():
        raise ModelNotFoundError(f"{model_dir} has no {film_file.name}; it is not a complete NP-DPO model")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    film = FiLM(FiLMConfig(**json.loads((model_dir / f"{FILM_WEIGHTS}.json").read_text())))
    film.load_state_dict(load_file(film_file))
    encoder = load_module(ContextEncoder, model_dir, CONTEXT_WEIGHTS)
    e = manifest.extra.get("embedding", {})
    embedder = Embedder(
        kwargs.get("embedding_model", e.get("model")),
        pooling=e.get("pooling", "auto"),
        max_length=e.get("max_length", 256),
        cache_dir=kwargs.get("embedding_cache"),
    )
    return NPDPOPolicy(model, tokenizer, encoder, film.to(device), embedder, manifest, model_dir)

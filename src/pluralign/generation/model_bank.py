"""A policy backed by several models, one of which serves each preference: MORLHF's runs (the nearest trained
preference), Rewarded Soups' weight averages (one per preference), MODPO's members (nearest, or two mixed).

A subclass says which model serves a preference (:meth:`ModelBankPolicy.key_for`) and how to build that model
(:meth:`ModelBankPolicy.build`). The bank keeps the ``max_loaded`` most recently used models (the oldest is
released before a new one is built) and batches a request list by the model that serves each request.

When every member is a LoRA adapter of one base model, a subclass sets ``lora`` (a
:class:`pluralign.generation.lora_mix.LoRAMix`) and says how much of each member serves a preference
(:meth:`ModelBankPolicy.adapter_weights`): then one base model and K adapters serve every preference, each
row of a batch mixed by its own request's weights inside the LoRA layers (``mixing="weights"``, the
default, equal to the merged model of that mix), or by mixing the members' next-token log-probabilities
(``mixing="logits"``, MOD), and requests with different preferences share every forward pass.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from pluralign.errors import ConfigError
from pluralign.generation.batched import generate_batched
from pluralign.generation.lora_mix import MIXINGS
from pluralign.generation.policy import DecodeTarget, PreferenceLike, SteerablePolicy
from pluralign.generation.prompts import render_prompt


class ModelBankPolicy(SteerablePolicy):
    """Serves each preference with one of several models, built on demand and kept in an LRU bank
    (or, for a LoRA bank, with one base model and its adapters mixed per row)."""

    tokenizer: Any
    batch_size: int = 16
    max_loaded: int = 1
    lora: Any = None  # a LoRAMix when the members are LoRA adapters of one base
    token_streaming = True

    @abstractmethod
    def key_for(self, weights: tuple[float, ...]) -> Hashable:
        """Which model serves these weights (equal weights stand for no preference)."""

    @abstractmethod
    def build(self, key: Any) -> Any:
        """The model that ``key`` names, ready to generate."""

    def adapter_weights(self, weights: tuple[float, ...]) -> tuple[float, ...]:
        """How much of each member (LoRA adapter, in bank order) serves these weights (LoRA banks only)."""
        raise NotImplementedError(f"{type(self).__name__} does not mix LoRA adapters")

    @property
    def mixings(self) -> tuple[str, ...]:
        return MIXINGS if self.lora is not None else ()

    def check_mixing(self, mixing: str | None) -> str | None:
        """``mixing`` checked against the bank: None (the default), "weights" or "logits" for a LoRA bank."""
        if mixing is None:
            return None
        if mixing not in MIXINGS:
            raise ConfigError(f"mixing {mixing!r} is unknown; use one of {', '.join(MIXINGS)}")
        if self.lora is None:
            raise ConfigError(f"mixing {mixing!r} needs a bank of LoRA adapters; this {self.method} model has full weights")
        return mixing

    def bank_model(self, key: Any) -> Any:
        """The model of ``key``: from the bank when it is there, else built (after releasing the oldest)."""
        bank: OrderedDict[Any, Any] = self.__dict__.setdefault("_bank", OrderedDict())
        if key in bank:
            bank.move_to_end(key)
            return bank[key]
        while len(bank) >= max(1, self.max_loaded):
            bank.popitem(last=False)
        bank[key] = model = self.build(key)
        return model

    def decode_target(self, prompt: Any, preference: PreferenceLike | None, mixing: str | None = None) -> DecodeTarget:
        mixing = self.check_mixing(mixing)
        weights = self.weights_for(preference)
        text = self.rendered_prompt(prompt, preference)
        if self.lora is None:
            return DecodeTarget(self.bank_model(self.key_for(weights)), self.tokenizer, text)
        mix = tuple(float(x) for x in self.adapter_weights(weights))
        if mixing == "logits":
            return DecodeTarget(self.lora.model, self.tokenizer, text, mix=self.lora, logit_weights=mix)
        return DecodeTarget(self.lora.model, self.tokenizer, text, mix=self.lora, adapter_weights=mix)

    def generate_many(
        self,
        prompts: Sequence[Any],
        preferences: Sequence[PreferenceLike | None],
        mixing: str | None = None,
        on_token: Any = None,
        **generation_kwargs: Any,
    ) -> list[str]:
        """A LoRA bank: every request in one batched pass, each row mixed by its own weights. Full
        weights: requests grouped by the model that serves them, each model built once."""
        mixing = self.check_mixing(mixing)
        generation_kwargs.setdefault("batch_size", self.batch_size)
        if self.lora is not None:
            mixes = [self.adapter_weights(self.weights_for(w)) for w in preferences]
            if mixing == "logits":
                from pluralign.generation.stepwise import decode_texts

                texts = [render_prompt(self.tokenizer, p) for p in prompts]
                generation_kwargs.pop("batch_size")
                return decode_texts(
                    self.lora.model, self.tokenizer, texts, mix=self.lora, logit_weights=mixes, on_token=on_token,
                    **generation_kwargs,
                )
            return generate_batched(
                self.lora.model,
                self.tokenizer,
                prompts,
                on_token=on_token,
                row_context=lambda idx: self.lora.rows([mixes[i] for i in idx]),
                **generation_kwargs,
            )
        groups: dict[Hashable, list[int]] = {}
        for i, w in enumerate(preferences):
            groups.setdefault(self.key_for(self.weights_for(w)), []).append(i)
        out = [""] * len(prompts)
        for key, idx in groups.items():
            callback = (lambda j, t, idx=idx: on_token(idx[j], t)) if on_token is not None else None
            texts = generate_batched(
                self.bank_model(key), self.tokenizer, [prompts[i] for i in idx], on_token=callback, **generation_kwargs
            )
            for i, text in zip(idx, texts):
                out[i] = text
        return out

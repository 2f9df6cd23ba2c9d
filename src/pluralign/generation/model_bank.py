"""A policy backed by several models, one of which serves each preference: MORLHF's runs (the nearest trained
preference), Rewarded Soups' weight averages (one per preference), MODPO's members (nearest, or two mixed).

A subclass says which model serves a preference (:meth:`ModelBankPolicy.key_for`) and how to build that model
(:meth:`ModelBankPolicy.build`). The bank keeps the ``max_loaded`` most recently used models (the oldest is
released before a new one is built) and batches a request list by the model that serves each request.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from pluralign.generation.batched import generate_batched
from pluralign.generation.policy import PreferenceLike, SteerablePolicy


class ModelBankPolicy(SteerablePolicy):
    """Serves each preference with one of several models, built on demand and kept in an LRU bank."""

    tokenizer: Any
    batch_size: int = 16
    max_loaded: int = 1

    @abstractmethod
    def key_for(self, weights: tuple[float, ...]) -> Hashable:
        """Which model serves these weights (equal weights stand for no preference)."""

    @abstractmethod
    def build(self, key: Any) -> Any:
        """The model that ``key`` names, ready to generate."""

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

    def generate_many(
        self, prompts: Sequence[Any], preferences: Sequence[PreferenceLike | None], **generation_kwargs: Any
    ) -> list[str]:
        """Requests grouped by the model that serves them: each model is built once and generates in batches."""
        groups: dict[Hashable, list[int]] = {}
        for i, w in enumerate(preferences):
            groups.setdefault(self.key_for(self.weights_for(w)), []).append(i)
        generation_kwargs.setdefault("batch_size", self.batch_size)
        out = [""] * len(prompts)
        for key, idx in groups.items():
            texts = generate_batched(self.bank_model(key), self.tokenizer, [prompts[i] for i in idx], **generation_kwargs)
            for i, text in zip(idx, texts):
                out[i] = text
        return out

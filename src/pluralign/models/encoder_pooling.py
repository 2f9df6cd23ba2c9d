"""How a reward head reads an encoder: the attention-masked mean of a chosen block's token states.

A BERT-style sequence classifier reads its ``[CLS]`` pooler output. A sentence encoder such as
all-MiniLM-L6-v2 was trained to put a text's meaning in the MEAN of its token states, and never trained
that pooler, so a head on it learns little (docs/reward_models.md measured 0.60 held-out accuracy on real
HH pairs against 0.65 for the mean of a middle block). Two steps make the head read what btl reads:

- :func:`keep_blocks` keeps a model's first ``k`` transformer blocks (``config.num_hidden_layers = k``),
  so its output IS block ``k``'s: a middle block, and a third less to compute. Saved, it is a plain
  Hugging Face model of ``k`` blocks;
- :func:`use_mean_pooling` makes a sequence classifier's ``forward`` apply its linear head to the
  attention-masked mean of its last hidden state (padding excluded) instead of the ``[CLS]`` pooler. The
  weights are untouched: the saved folder is a plain ``AutoModelForSequenceClassification`` that scores
  this way once :func:`use_mean_pooling` is applied again at loading (``pooling: mean`` in
  ``pluralign.json``: :class:`pluralign.objectives.hf.HFRewardModel` does it).

Causal LMs keep their own pooling (the last real token): :func:`resolve_pooling`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pluralign.errors import ConfigError
from pluralign.models.embeddings import default_layer, is_causal_lm

POOLINGS = ("auto", "mean", "model")


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) token states, (B, T) mask -> (B, H): the mean over the tokens whose mask is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def is_encoder(config: Any) -> bool:
    """A bidirectional encoder (BERT, RoBERTa, DeBERTa, MiniLM...): a model type with a masked-LM head that is
    not set up as a decoder. A Llama, GPT-2 or Qwen model is not, whatever head its checkpoint carries."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if config is None or is_causal_lm(config):
        return False
    return getattr(config, "model_type", None) in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def resolve_pooling(pooling: str, config: Any) -> str:
    """``auto``: ``mean`` for an encoder, ``model`` (the model's own: a causal LM's last real token) otherwise."""
    if pooling not in POOLINGS:
        raise ConfigError(f"--pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    if pooling != "auto":
        return pooling
    return "mean" if is_encoder(config) else "model"


def resolve_pooled_layer(layer: int | None, model_name: str | None, blocks: int, pretrained: bool = True) -> int:
    """The block whose output is read, 1..``blocks``: ``layer`` (negative counts from the end, -1 the
    last), or by default block 4 of the bundled all-MiniLM-L6-v2 (measured) and the last of any other."""
    if layer is None:
        layer = default_layer(model_name) if pretrained else -1
    k = blocks + 1 + layer if layer < 0 else layer
    if not 1 <= k <= blocks:
        raise ConfigError(f"--pooling_layer {layer} does not fit a model of {blocks} blocks; use 1..{blocks} or -1")
    return k


def keep_blocks(model: nn.Module, k: int) -> None:
    """Keep the first ``k`` transformer blocks of ``model`` (in place): its last hidden state becomes block
    ``k``'s output, and ``save_pretrained`` writes a ``k``-block model."""
    from pluralign.models.frozen_layers import transformer_blocks

    blocks = transformer_blocks(model)
    if not 1 <= k <= len(blocks):
        raise ConfigError(f"cannot keep {k} blocks of a model of {len(blocks)}")
    if k == len(blocks):
        return
    del blocks[k:]
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text.num_hidden_layers = k
    if text is not model.config and hasattr(model.config, "num_hidden_layers"):
        model.config.num_hidden_layers = k


def use_mean_pooling(model: nn.Module) -> nn.Module:
    """Make a sequence classifier score ``head(masked mean of the last hidden state)`` (in place; returns
    it). The head is looked up at every call, so a LoRA wrapper around it (``modules_to_save``) is used."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    from pluralign.models.frozen_layers import head_module

    head_name, _ = head_module(model)

    def forward(
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **_ignored: Any,  # labels, use_cache, return_dict: a reward head returns its logits
    ) -> SequenceClassifierOutput:
        shape = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(shape, dtype=torch.long, device=model.device)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            inputs["position_ids"] = position_ids
        hidden = model.base_model(**inputs)[0]
        logits = model.get_submodule(head_name)(masked_mean(hidden, attention_mask))
        return SequenceClassifierOutput(logits=logits)

    model.forward = forward  # an instance attribute: the class, the weights and save_pretrained are untouched
    pooler = getattr(model.base_model, "pooler", None)
    if isinstance(pooler, nn.Module):  # no longer read: nothing to train (and no unused parameter for DDP)
        pooler.requires_grad_(False)
    return model

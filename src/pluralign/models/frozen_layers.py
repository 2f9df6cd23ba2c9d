"""Training only the top of a Hugging Face sequence classifier: the frozen part is run once, not every step.

``trainable_layers = N`` splits the model at block ``L - N`` of its ``L`` transformer blocks:

- ``N >= 1``: the hidden states entering block ``L - N`` are computed once per sequence
  (:func:`extract`, stored by :class:`~pluralign.models.feature_cache.FeatureCache`); in training
  :class:`SkipLowerBlocks` makes the lower blocks pass-throughs and hands block ``L - N`` the stored states,
  so a step costs the top ``N`` blocks, the final norm / pooler and the head. Masks, positions and the
  model's own pooling are computed by the model as usual, so the trained model is a plain Hugging Face
  model that scores the same way it was trained.
- ``N = 0``: the classification head's input, pooled the way the model pools (the last real token of a
  causal LM, the pooler output of a BERT, or the masked mean once
  :func:`pluralign.models.encoder_pooling.use_mean_pooling` is applied), is stored once per sequence; only
  the head is trained.

Works on any model whose blocks sit in one ``nn.ModuleList`` of ``config.num_hidden_layers`` entries and
whose head is named ``score`` or ``classifier`` (Llama, Qwen, Mistral, GPT-2, BERT, RoBERTa, DeBERTa...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pluralign.errors import ConfigError
from pluralign.models.feature_cache import FeatureCache, fill, ids_key

HEAD_NAMES = ("score", "classifier")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks (the first ``ModuleList`` as long as its layer count)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    count = getattr(config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and count and len(module) == count:
            return module
    raise ConfigError(
        f"cannot find the transformer blocks of {type(model).__name__}; --trainable_layers needs a model with "
        "config.num_hidden_layers blocks in one list (drop --trainable_layers to fine-tune it whole)"
    )


def head_module(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the classification head (a linear layer named ``score`` or ``classifier``)."""
    for name in HEAD_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Linear):
            return name, module
        if isinstance(module, nn.Module) and isinstance(getattr(module, "out_proj", None), nn.Linear):
            return f"{name}.out_proj", module.out_proj  # RoBERTa-style heads end in out_proj
    raise ConfigError(f"{type(model).__name__} has no linear head named {' or '.join(HEAD_NAMES)}")


def check_split(model: nn.Module, trainable_layers: int) -> int:
    """The index of the first trained block; a ConfigError when ``trainable_layers`` does not fit."""
    n = len(transformer_blocks(model))
    if not 0 <= trainable_layers < n:
        raise ConfigError(
            f"--trainable_layers {trainable_layers} does not fit a model of {n} blocks; use 0 (head only) to {n - 1}, "
            "or drop it to fine-tune the whole model"
        )
    return n - trainable_layers


def freeze_below(model: nn.Module, trainable_layers: int) -> None:
    """Only the top ``trainable_layers`` blocks, what follows them (final norm, pooler) and the head train."""
    split = check_split(model, trainable_layers)
    blocks = transformer_blocks(model)
    _, head = head_module(model)
    keep = {id(p) for b in list(blocks)[split:] for p in b.parameters()} | {id(p) for p in head.parameters()}
    if trainable_layers > 0:
        keep |= _after_blocks(model, blocks)
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def _after_blocks(model: nn.Module, blocks: nn.ModuleList) -> set[int]:
    """Parameters that act after the last block (final norm, pooler): registered after the block list."""
    ids, seen = set(), False
    block_params = {id(p) for p in blocks.parameters()}
    embeddings = model.get_input_embeddings()
    embedding_params = {id(p) for p in embeddings.parameters()} if embeddings is not None else set()
    for _, p in model.named_parameters():
        if id(p) in block_params:
            seen = True
        elif seen and id(p) not in embedding_params:
            ids.add(id(p))
    return ids


class _Stop(Exception):
    pass


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _last_real_token(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Where a Hugging Face classifier pools a causal LM: the rightmost token that is not padding."""
    if pad_token_id is None:
        mask = attention_mask
    else:
        mask = (input_ids != pad_token_id).to(torch.int64)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (positions * mask).argmax(-1)


@torch.no_grad()
def _run_batch(model: nn.Module, trainable_layers: int, ids: list[list[int]], pad_id: int) -> list[torch.Tensor]:
    """One batch of sequences (right-padded) -> per sequence the stored tensor (see the module docstring)."""
    length = max(len(x) for x in ids)
    device = next(model.parameters()).device
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), length), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        attention[i, : len(x)] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    captured: dict[str, torch.Tensor] = {}
    if trainable_layers == 0:
        _, head = head_module(model)

        def grab(_module: nn.Module, args: tuple) -> None:
            captured["x"] = args[0]

        handle = head.register_forward_pre_hook(grab)
    else:
        block = transformer_blocks(model)[check_split(model, trainable_layers)]

        def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured["x"] = _hidden_arg(args, kwargs)
            raise _Stop  # the blocks above are what training runs: no need to run them now

        handle = block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model(input_ids=input_ids, attention_mask=attention)
    except _Stop:
        pass
    finally:
        handle.remove()
    x = captured["x"].float()
    if trainable_layers == 0:
        if x.dim() == 3:  # a head applied to every token, pooled afterwards (causal LMs)
            pad = getattr(model.config, "pad_token_id", None)
            x = x[torch.arange(x.shape[0], device=x.device), _last_real_token(input_ids, attention, pad)]
        return [row.half().cpu() for row in x]
    return [x[i, : len(seq)].half().cpu() for i, seq in enumerate(ids)]


def extract(
    model: nn.Module,
    sequences: Sequence[Sequence[int]],
    cache: FeatureCache,
    trainable_layers: int,
    pad_token_id: int,
    batch_tokens: int = 8192,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Compute and store what the trained top needs for every sequence not cached yet; returns how many.

    Sequences are run shortest first in batches of about ``batch_tokens`` padded tokens, so little
    padding is computed; every batch is written at once, so an interrupted run loses one batch at most.
    """
    keys = [ids_key(s) for s in sequences]
    if not cache.missing(keys):
        return 0
    was_training = model.training
    model.eval()
    try:
        return fill(cache, keys, [list(s) for s in sequences],
                    lambda batch: _run_batch(model, trainable_layers, batch, pad_token_id),
                    batch_tokens=batch_tokens, progress=progress)  # fmt: skip
    finally:
        model.train(was_training)


class SkipLowerBlocks:
    """While active, blocks below the split return their input untouched (nothing is computed) and the first
    trained block receives :meth:`inject`'s hidden states instead of what comes from below."""

    def __init__(self, model: nn.Module, trainable_layers: int) -> None:
        if trainable_layers < 1:
            raise ConfigError("SkipLowerBlocks needs trainable_layers >= 1 (0 trains the head on pooled features)")
        self.blocks = transformer_blocks(model)
        self.split = check_split(model, trainable_layers)
        self.states: torch.Tensor | None = None
        self.handle: Any = None

    def inject(self, states: torch.Tensor) -> None:
        self.states = states

    def _replace(self, _module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self.states is None:
            raise RuntimeError("no stored hidden states were injected for this batch")
        hidden = _hidden_arg(args, kwargs)
        states = self.states.to(device=hidden.device, dtype=hidden.dtype)
        self.states = None  # one batch, one use
        if args:
            return (states, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": states}

    def __enter__(self) -> SkipLowerBlocks:
        for block in list(self.blocks)[: self.split]:
            block.forward = _passthrough  # an instance attribute: the weights stay where they were
        self.handle = self.blocks[self.split].register_forward_pre_hook(self._replace, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for block in list(self.blocks)[: self.split]:
            block.__dict__.pop("forward", None)
        if self.handle is not None:
            self.handle.remove()


def _passthrough(*args: Any, **kwargs: Any) -> Any:
    return _hidden_arg(args, kwargs)


def cache_identity(model_source: str, trainable_layers: int, dtype: str = "float16") -> str:
    """What the stored tensors depend on besides the token ids: the frozen model and where it is split."""
    path = Path(model_source)
    stamp = ""
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        stamp = ":".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights)
    where = str(path.resolve()) if path.exists() else model_source
    what = "head-input" if trainable_layers == 0 else f"top-{trainable_layers}-input"
    return f"{where}:{stamp}:{what}:{dtype}"


"""A tiny GPT-2 pretrained from scratch on the demo world: byte-level BPE tokenizer + a small config.

It stands in for "the SFT model" of the papers (METHODS.md): every method in the demo starts from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

EOS = "<|endoftext|>"
PAD = "<pad>"


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 600):
    """Train a byte-level BPE on ``texts`` and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD)
    fast.padding_side = "left"
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_gpt(
    out_dir: str | Path, tokenizer, n_layer: int = 3, n_embd: int = 96, n_positions: int = 160, seed: int = 0
) -> str:
    """Save a randomly initialised GPT-2 of the given size beside ``tokenizer``; returns the folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return str(out_dir)


def tokenizer_texts(samples: Sequence[dict], extra: Sequence[str] = ()) -> list[str]:
    """Texts to train the BPE on: the corpus plus digits, signs and tag-like strings methods add."""
    numbers = [f"{v / 10:.1f}" for v in range(-60, 61)]
    return [s["prompt"] + s["response"] for s in samples] + list(extra) + [" ".join(numbers)] * 20

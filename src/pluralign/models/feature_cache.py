"""A resumable on-disk store of tensors keyed by content: the frozen part of a model, computed once.

Training only the top of a model (``--trainable_layers``) feeds it the hidden states of the frozen layers
below; those never change, so they are computed once and kept here. Each key is a hash of what went in
(the token ids), each write is one more ``shard-NNNNN.safetensors`` file beside a ``meta.json`` that
names what the tensors are (model, layer, dtype): a run stopped half-way keeps its finished shards and
the next run computes only what is missing; a different model or layer goes to a different folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from pluralign.errors import ConfigError

META = "meta.json"
T = TypeVar("T")


def ids_key(ids: Sequence[int]) -> str:
    """The key of one token-id sequence."""
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()


class FeatureCache:
    """Tensors keyed by :func:`ids_key` under ``root/<hash of identity>/`` (see the module docstring)."""

    def __init__(self, root: str | Path, identity: str, meta: Mapping[str, Any] | None = None) -> None:
        self.identity = identity
        self.folder = Path(root) / hashlib.sha1(identity.encode()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        meta_path = self.folder / META
        if meta_path.is_file():
            stored = json.loads(meta_path.read_text())
            if stored.get("identity") != identity:
                raise ConfigError(f"feature cache {self.folder} holds other features; delete it or pick another --feature_cache")
            self.meta = stored
        else:
            self.meta = {"identity": identity, **dict(meta or {})}
            meta_path.write_text(json.dumps(self.meta, indent=2))
        self._where: dict[str, Path] = {}
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            from safetensors import safe_open

            try:
                with safe_open(str(shard), "pt") as f:
                    self._where.update(dict.fromkeys(f.keys(), shard))
            except Exception:  # a shard cut short by a crash: its features are computed again
                shard.unlink(missing_ok=True)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The distinct keys not stored yet, in first-seen order."""
        return [k for k in dict.fromkeys(keys) if k not in self._where]

    def put(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Store a batch of tensors as one new shard (written to a temporary name, then renamed)."""
        if not tensors:
            return
        from safetensors.torch import save_file

        n = len(list(self.folder.glob("shard-*.safetensors")))
        shard = self.folder / f"shard-{n:05d}.safetensors"
        while shard.exists():
            n += 1
            shard = self.folder / f"shard-{n:05d}.safetensors"
        tmp = shard.with_suffix(".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        tmp.replace(shard)
        self._where.update(dict.fromkeys(tensors, shard))

    def get(self, keys: Sequence[str]) -> list[torch.Tensor]:
        """The tensors of ``keys`` (all must be stored), in order."""
        from safetensors import safe_open

        absent = [k for k in keys if k not in self._where]
        if absent:
            raise ConfigError(f"{len(absent)} features are not in the cache {self.folder}; compute them first")
        by_shard: dict[Path, list[str]] = {}
        for k in dict.fromkeys(keys):
            by_shard.setdefault(self._where[k], []).append(k)
        found: dict[str, torch.Tensor] = {}
        for shard, wanted in by_shard.items():
            with safe_open(str(shard), "pt") as f:
                for k in wanted:
                    found[k] = f.get_tensor(k)
        return [found[k] for k in keys]


def fill(
    cache: FeatureCache,
    keys: Sequence[str],
    items: Sequence[T],
    run_batch: Callable[[list[T]], Sequence[torch.Tensor]],
    length: Callable[[T], int] = len,
    batch_tokens: int = 8192,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Store ``run_batch``'s tensors for every item whose key is not in ``cache`` yet; returns how many.

    Items run shortest first in batches of about ``batch_tokens`` padded tokens (``length`` tokens each), so
    little padding is computed; every batch is written at once, so an interrupted run loses one batch at most.
    """
    todo_keys = set(cache.missing(keys))
    todo = sorted({k: x for k, x in zip(keys, items) if k in todo_keys}.items(), key=lambda kv: length(kv[1]))
    done, start, last_report = 0, time.perf_counter(), time.perf_counter()
    i = 0
    while i < len(todo):
        j = i + 1
        while j < len(todo) and (j - i + 1) * length(todo[j][1]) <= batch_tokens:
            j += 1
        batch = todo[i:j]
        out = run_batch([x for _, x in batch])
        cache.put({k: t for (k, _), t in zip(batch, out)})
        done += len(batch)
        i = j
        if progress and (time.perf_counter() - last_report > 30 or i == len(todo)):
            last_report = time.perf_counter()
            progress(f"features: {done}/{len(todo)} sequences ({last_report - start:.0f}s)")
    return len(todo)

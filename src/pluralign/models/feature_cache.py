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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ConfigError

META = "meta.json"


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

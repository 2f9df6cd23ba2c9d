""":func:`load_policy`: any trained pluralign model folder as a steerable policy, whatever its method.

It sits above the methods (which never import each other) and below the worlds, the server and the CLI,
so every edge to a method's ``policy`` module is a plain import that ``lint-imports`` checks. Each method
provides ``pluralign.methods.<method>.policy.load(model_dir, manifest, **kwargs) -> SteerablePolicy``; a new
method adds its name to :data:`POLICY_METHODS` and a branch to :func:`policy_loader`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError
from pluralign.generation.policy import SteerablePolicy
from pluralign.models.manifest import Manifest

POLICY_METHODS = ("dpo", "modpo", "morlhf", "moslim", "npdpo", "ric", "ric_image", "soups", "spo")


def policy_loader(method: str) -> Callable[..., SteerablePolicy]:
    """The ``load`` hook of ``method`` (the name in ``pluralign.json``; ``ric-image`` and ``ric_image`` alike),
    imported on first use so that loading one method never imports the others' dependencies."""
    name = method.replace("-", "_")
    if name == "dpo":
        from pluralign.methods.dpo import policy
    elif name == "modpo":
        from pluralign.methods.modpo import policy
    elif name == "morlhf":
        from pluralign.methods.morlhf import policy
    elif name == "moslim":
        from pluralign.methods.moslim import policy
    elif name == "npdpo":
        from pluralign.methods.npdpo import policy
    elif name == "ric":
        from pluralign.methods.ric import policy
    elif name == "ric_image":
        from pluralign.methods.ric_image import policy
    elif name == "soups":
        from pluralign.methods.soups import policy
    elif name == "spo":
        from pluralign.methods.spo import policy
    else:
        raise ConfigError(f"unknown method {method!r}; pluralign loads {', '.join(POLICY_METHODS)}")
    return policy.load


def load_policy(path: str | Path, **kwargs: Any) -> SteerablePolicy:
    """Load any trained pluralign model directory as a :class:`SteerablePolicy`."""
    manifest = Manifest.load(path)
    try:
        load = policy_loader(manifest.method)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc} (from pluralign.json)") from None
    return load(Path(path), manifest, **kwargs)

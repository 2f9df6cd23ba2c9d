"""pluralign: steerable, multi-objective and personalised alignment of language models."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["load_policy", "load_reward_model", "Preference", "preference_to_rewards", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from pluralign.objectives.trained import load_reward_model
    from pluralign.policies import load_policy
    from pluralign.preferences.rewards import preference_to_rewards
    from pluralign.preferences.weights import Preference


# Lazy exports keep `import pluralign` and the CLI's start fast (torch is only imported when needed).
_EXPORTS = {
    "load_policy": "pluralign.policies",
    "load_reward_model": "pluralign.objectives.trained",
    "Preference": "pluralign.preferences.weights",
    "preference_to_rewards": "pluralign.preferences.rewards",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)

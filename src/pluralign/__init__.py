"""pluralign: steerable, multi-objective and personalised alignment of language models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["load_policy", "load_reward_model", "Preference", "preference_to_rewards", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from pluralign.objectives.trained import load_reward_model
    from pluralign.policies import load_policy
    from pluralign.preferences.rewards import preference_to_rewards
    from pluralign.preferences.weights import Preference


# Lazy exports keep `import pluralign` and the CLI's start fast (torch is only imported when needed); plain
# imports, so lint-imports sees them.
def __getattr__(name: str) -> Any:
    if name == "load_policy":
        from pluralign.policies import load_policy

        return load_policy
    if name == "load_reward_model":
        from pluralign.objectives.trained import load_reward_model

        return load_reward_model
    if name == "Preference":
        from pluralign.preferences.weights import Preference

        return Preference
    if name == "preference_to_rewards":
        from pluralign.preferences.rewards import preference_to_rewards

        return preference_to_rewards
    raise AttributeError(name)

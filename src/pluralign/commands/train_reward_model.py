"""``pluralign train reward-model --type btl|npbtl|multihead|classifier|ensemble ...``.

Each type's trainer lives in ``pluralign.reward_models.<type>.trainer`` with ``run(argv) -> int``; this
command picks one (the types never import each other).
"""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.errors import ConfigError
from pluralign.objectives.trained import REWARD_MODEL_TYPES

HELP = "train a reward model: --type btl | npbtl | multihead | classifier | ensemble"


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    kind = None
    for i, a in enumerate(argv):
        if a == "--type" and i + 1 < len(argv):
            kind = argv[i + 1]
            del argv[i : i + 2]
            break
        if a.startswith("--type="):
            kind = a.split("=", 1)[1]
            del argv[i]
            break
    if kind is None:
        if any(a in ("-h", "--help") for a in argv):
            print(f"usage: pluralign train reward-model --type {{{','.join(REWARD_MODEL_TYPES)}}} [flags]")
            return 0
        raise ConfigError(f"--type is required; use one of {', '.join(REWARD_MODEL_TYPES)}")
    if kind not in REWARD_MODEL_TYPES:
        raise ConfigError(f"unknown reward model --type {kind!r}; use one of {', '.join(REWARD_MODEL_TYPES)}")
    if kind == "btl":
        from pluralign.reward_models.btl import trainer
    elif kind == "npbtl":
        from pluralign.reward_models.npbtl import trainer
    elif kind == "multihead":
        from pluralign.reward_models.multihead import trainer
    elif kind == "classifier":
        from pluralign.reward_models.classifier import trainer
    else:
        from pluralign.reward_models.ensemble import trainer
    return int(trainer.run(argv) or 0)

"""``pluralign train moslim``: RL of a policy on a multi-head reward model with preferences in the prompt."""

from __future__ import annotations

from collections.abc import Sequence

HELP = "MOSLIM: RL (grpo | rloo | online_dpo) on a multi-head reward model, intensities stated in the prompt"


def selected_algorithm(argv: Sequence[str]) -> str:
    """``--algorithm`` from the flags, else from the ``--config`` file, else ``grpo``."""
    from pluralign.config import load_yaml

    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--algorithm" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--algorithm="):
            return a.split("=", 1)[1]
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        return str(load_yaml(argv[argv.index("--config") + 1]).get("algorithm", "grpo"))
    return "grpo"


def run(argv: Sequence[str]) -> int:
    from pluralign.config import parse_config
    from pluralign.methods.moslim.config import config_class
    from pluralign.methods.moslim.trainer import train_moslim

    config = parse_config(config_class(selected_algorithm(argv)), argv, prog="pluralign train moslim")
    out = train_moslim(config)
    print(f"saved to {out}; steer it with pluralign generate --model {out} --preference name=w,...")
    return 0

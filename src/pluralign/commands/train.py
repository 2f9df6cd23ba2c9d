"""``pluralign train <method> [--config FILE.yaml] [flags]``: a static table of every training command.

Each entry is a plain import inside a function, so ``lint-imports`` sees every edge from the CLI to a
method and loading one method never imports another's dependencies. A method folder with a ``cli.py``
(``HELP`` and ``run(argv)``) must be listed here: ``tests/test_architecture.py`` fails otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

METHODS = ("dpo", "modpo", "morlhf", "moslim", "npdpo", "reward-model", "ric", "ric-image", "soups", "spo")


def method_cli(name: str) -> ModuleType:
    """The module whose ``run(argv)`` is ``pluralign train <name>``."""
    if name == "dpo":
        from pluralign.methods.dpo import cli
    elif name == "modpo":
        from pluralign.methods.modpo import cli
    elif name == "morlhf":
        from pluralign.methods.morlhf import cli
    elif name == "moslim":
        from pluralign.methods.moslim import cli
    elif name == "npdpo":
        from pluralign.methods.npdpo import cli
    elif name == "reward-model":
        from pluralign.commands import train_reward_model as cli
    elif name == "ric":
        from pluralign.methods.ric import cli
    elif name == "ric-image":
        from pluralign.methods.ric_image import cli
    elif name == "soups":
        from pluralign.methods.soups import cli
    elif name == "spo":
        from pluralign.methods.spo import cli
    else:
        raise KeyError(name)
    return cli


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: pluralign train <method> [--config FILE.yaml] [flags]\nmethods: " + ", ".join(METHODS))
        return 0
    if argv[0] not in METHODS:
        print(f"pluralign train: unknown method {argv[0]!r}; methods: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    return int(method_cli(argv[0]).run(argv[1:]) or 0)

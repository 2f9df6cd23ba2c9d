"""The ``pluralign`` command.

``pluralign demo | score | train <method> | evaluate | generate | serve | accuracy``. Every command takes
``--config FILE.yaml`` and flags that override it. Each command is a module of ``pluralign.commands``,
reached through a static table of plain imports (:func:`command`), so ``lint-imports`` checks every edge;
``pluralign train <method>`` is ``pluralign.commands.train``. User errors print one line and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

from pluralign.errors import PluralignError
from pluralign.training.quiet import quiet_libraries

COMMANDS = {
    "demo": "run the embedded default end to end (no network, CPU)",
    "score": "score a dataset with K objectives (cached, resumable)",
    "train": "train a method: pluralign train <method> --help",
    "evaluate": "Pareto front of a model over a preference grid",
    "generate": "generate steered by a preference or by choices",
    "serve": "serve a model over an OpenAI-compatible HTTP API",
    "accuracy": "pairwise accuracy of reward models / objectives on pairs",
}


def command(name: str) -> ModuleType:
    """The module whose ``run(argv)`` is ``pluralign <name>`` (imported only when it runs)."""
    if name == "demo":
        from pluralign.commands import demo as module
    elif name == "score":
        from pluralign.commands import score as module
    elif name == "train":
        from pluralign.commands import train as module
    elif name == "evaluate":
        from pluralign.commands import evaluate as module
    elif name == "generate":
        from pluralign.commands import generate as module
    elif name == "serve":
        from pluralign.commands import serve as module
    elif name == "accuracy":
        from pluralign.commands import accuracy as module
    else:
        raise KeyError(name)
    return module


def _usage() -> str:
    from pluralign.commands.train import METHODS

    lines = ["usage: pluralign <command> [--config FILE.yaml] [flags]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, help_ in COMMANDS.items()]
    lines += ["", "training methods (pluralign train <method>): " + ", ".join(METHODS)]
    return "\n".join(lines)


def dispatch(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from pluralign import __version__

        print(__version__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"pluralign: unknown command {cmd!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(command(cmd).run(rest) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_libraries()
    try:
        return dispatch(argv)
    except PluralignError as exc:
        print(f"pluralign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pluralign: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

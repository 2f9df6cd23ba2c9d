"""The ``pluralign`` command.

``pluralign demo | score | train <method> | evaluate | generate | serve | accuracy``. Every command takes
``--config FILE.yaml`` and flags that override it. Training methods are discovered: a method folder
``pluralign/methods/<name>/`` with a ``cli.py`` exposing ``HELP`` and ``run(argv)`` becomes
``pluralign train <name>`` (underscores shown as dashes). User errors print one line and exit 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

from pluralign.errors import PluralignError
from pluralign.training.quiet import quiet_libraries

COMMANDS = {
    "demo": ("pluralign.commands.demo", "run the embedded default end to end (no network, CPU)"),
    "score": ("pluralign.commands.score", "score a dataset with K objectives (cached, resumable)"),
    "train": (None, "train a method: pluralign train <method> --help"),
    "evaluate": ("pluralign.commands.evaluate", "Pareto front of a model over a preference grid"),
    "generate": ("pluralign.commands.generate", "generate steered by a preference or by choices"),
    "serve": ("pluralign.commands.serve", "serve a model over an OpenAI-compatible HTTP API"),
    "accuracy": ("pluralign.commands.accuracy", "pairwise accuracy of reward models / objectives on pairs"),
}


def training_methods() -> dict[str, str]:
    """``{command name: module}`` for every method folder with a cli.py, plus ``reward-model``."""
    import pluralign.methods as methods_pkg

    found = {"reward-model": "pluralign.commands.train_reward_model"}
    for info in pkgutil.iter_modules(methods_pkg.__path__):
        if info.ispkg and importlib.util.find_spec(f"pluralign.methods.{info.name}.cli") is not None:
            found[info.name.replace("_", "-")] = f"pluralign.methods.{info.name}.cli"
    return dict(sorted(found.items()))


def _usage() -> str:
    lines = ["usage: pluralign <command> [--config FILE.yaml] [flags]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "training methods (pluralign train <method>): " + ", ".join(training_methods())]
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
    if cmd == "train":
        methods = training_methods()
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: pluralign train <method> [--config FILE.yaml] [flags]\nmethods: " + ", ".join(methods))
            return 0
        if rest[0] not in methods:
            print(f"pluralign train: unknown method {rest[0]!r}; methods: {', '.join(methods)}", file=sys.stderr)
            return 2
        module = importlib.import_module(methods[rest[0]])
        rest = rest[1:]
    else:
        module = importlib.import_module(COMMANDS[cmd][0])
    return int(module.run(rest) or 0)




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

"""Config files and flags: a YAML file gives defaults, command-line flags override them (TRL's convention).

Each command describes its options with a dataclass (for trainers, one that extends the TRL config it
builds on). Unknown keys in a config file are an error naming the key and the closest valid one.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pluralign.errors import ConfigError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; check the path given to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of option: value")
    return data


def check_keys(keys: Sequence[str], valid: Sequence[str], where: str) -> None:
    """Raise ConfigError for the first key not in ``valid``, suggesting the nearest valid key."""
    for key in keys:
        if key not in valid:
            near = difflib.get_close_matches(key, list(valid), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else "; run with --help to list the options"
            raise ConfigError(f"unknown config key {key!r} in {where}{hint}")


def split_config_file(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` without ``--config FILE.yaml``, and the file's values (empty without one)."""
    argv = list(argv)
    if "--config" not in argv:
        return argv, {}
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise ConfigError("--config needs a file path, e.g. --config configs/ric_tiny.yaml")
    values = load_yaml(argv[i + 1])
    del argv[i : i + 2]
    return argv, values


def parse_config(config_cls: type[T], argv: Sequence[str], prog: str = "pluralign") -> T:
    """Build ``config_cls`` from ``--config FILE.yaml`` (defaults) and the flags in ``argv`` (overrides)."""
    from transformers import HfArgumentParser

    argv, file_values = split_config_file(argv)
    names = [f.name for f in dataclasses.fields(config_cls)]
    check_keys(list(file_values), names, "the config file")
    parser = HfArgumentParser(config_cls, prog=prog)
    repeatable = [a.option_strings[0] for a in parser._actions if a.nargs == "+" and a.option_strings]
    argv = merge_repeated_flags(argv, repeatable)
    # list-valued fields from YAML are set as defaults directly (argparse would re-split them)
    for action in parser._actions:
        if action.dest in file_values:
            action.default = file_values[action.dest]
            action.required = False
    (config,) = parser.parse_args_into_dataclasses(args=argv)
    return config


def merge_repeated_flags(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """``--objective a --objective b`` -> ``--objective a b``: list options are repeatable flags."""
    out: list[str] = []
    merged: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in flags:
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            if arg not in merged:
                merged[arg] = values
                out.append(arg)
            else:
                merged[arg].extend(values)
            continue
        out.append(arg)
        i += 1
    result: list[str] = []
    for arg in out:
        result.append(arg)
        if arg in merged:
            result.extend(merged[arg])
    return result


def parse_args(parser, argv: Sequence[str]):
    """argparse with TRL's ``--config`` convention: YAML values become defaults, flags override them."""
    argv, values = split_config_file(argv)
    if values:
        dests = [a.dest for a in parser._actions if a.dest not in ("help", "config")]
        check_keys(list(values), dests, "the config file")
        parser.set_defaults(**values)
        for action in parser._actions:
            if action.dest in values:
                action.required = False
    parser.add_argument("--config", help="YAML file whose keys are this command's flags")
    return parser.parse_args(argv)


def name_list(text: str) -> list[str]:
    """A comma-separated list of names from a flag (``a,b``); ``none`` or an empty text: no name."""
    if text.strip().lower() == "none":
        return []
    return [n.strip() for n in text.split(",") if n.strip()]


def add_generation_flags(parser) -> None:
    """transformers generation flags shared by generate / evaluate / demo."""
    parser.add_argument("--max_new_tokens", type=int, default=None, help="new tokens per response")
    parser.add_argument("--do_sample", action=argparse.BooleanOptionalAction, default=None, help="sample (else greedy)")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--top_k", type=int, default=None, help="top-k sampling; 0: off (pure top-p)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clean",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cut responses at the next turn marker, no EOS as first token (default: on; --no-clean: raw)",
    )
    parser.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send plain prompts as a user turn through the chat template (default: when the model has one)",
    )


SAMPLING_ONLY = ("temperature", "top_p", "top_k")  # generation options that only mean something when sampling


def generation_kwargs(args, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    out = dict(defaults or {})
    for key in ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    if not out.get("do_sample"):
        for key in SAMPLING_ONLY:
            out.pop(key, None)
    if getattr(args, "clean", None) is False:
        from pluralign.generation.cleaning import Cleaning

        out["cleaning"] = Cleaning.off()
    return out


def train_command(config_cls: type, train: Callable[[Any], Any], argv: Sequence[str], command: str) -> int:
    """The whole of ``pluralign train <command>``: the config from YAML and flags, training, where the model went."""
    config = parse_config(config_cls, argv, prog=f"pluralign train {command}")
    out = train(config)
    print(f"pluralign: model written to {out}")
    return 0

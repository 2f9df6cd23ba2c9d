"""``pluralign generate --model DIR --preference a=0.7,b=0.3 "prompt" ...``: steered generation."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from pluralign.config import add_generation_flags, generation_kwargs, name_list, parse_args
from pluralign.errors import ConfigError, DataError
from pluralign.generation.prompts import as_chat
from pluralign.models.manifest import Manifest
from pluralign.preferences.weights import Preference


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pluralign generate", description=__doc__)
    p.add_argument("prompts", nargs="*", help="prompt texts")
    p.add_argument("--model", required=True, help="a trained pluralign model dir")
    p.add_argument("--preference", default=None, help="name=w,name=w (weights sum to 1)")
    p.add_argument("--context", default=None, help="jsonl of the user's choices: prompt, chosen, rejected")
    p.add_argument("--prompts_file", default=None, help="one prompt per line")
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--out", default=None, help="image models: PNG file to write (several prompts: OUT_0.png, ...)")
    p.add_argument("--num_inference_steps", type=int, default=None, help="image models: sampling steps")
    p.add_argument(
        "--guidance_scale",
        type=float,
        default=None,
        help="classifier-free guidance: image models' CFG scale; RiC text models' guidance on the tags "
        "(1: plain decoding; default: what training stored)",
    )
    p.add_argument(
        "--guidance_against",
        default=None,
        help="RiC text models: the tags guidance steers away from, opposite | raised | neutral (default: stored)",
    )
    p.add_argument(
        "--floor_at_middle",
        default=None,
        help="RiC text models: objectives (comma-separated) never asked below the middle of their bounds, "
        "'none' for no objective (default: stored)",
    )
    add_generation_flags(p)
    return p


def read_context(path: str) -> list[tuple[str, str, str]]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"context file {path!r} does not exist")
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            raise DataError(
                f"context file {path!r} line {n} has no {missing[0]!r}; each line needs prompt, chosen, rejected"
            )
        out.append((row["prompt"], row["chosen"], row["rejected"]))
    return out


def run(argv: Sequence[str]) -> int:
    import torch

    from pluralign.policies import load_policy

    args = parse_args(build_parser(), argv)
    prompts = list(args.prompts)
    if args.prompts_file:
        prompts += [line for line in Path(args.prompts_file).read_text().splitlines() if line.strip()]
    if not prompts:
        raise DataError("no prompt given; pass prompt texts or --prompts_file FILE")
    manifest = Manifest.load(args.model)  # check the request before loading weights
    preference = Preference.from_any(args.preference, manifest.objectives) if args.preference else None
    context = read_context(args.context) if args.context else None
    policy = load_policy(args.model, trust_remote_code=args.trust_remote_code)
    prompts = as_chat(prompts, getattr(policy, "tokenizer", None), args.chat, getattr(policy, "chat_trained", False))
    torch.manual_seed(args.seed)
    if getattr(policy, "modality", "text") == "image":
        return _write_images(policy, prompts, preference, context, args)
    if args.floor_at_middle is not None:
        if not hasattr(policy, "set_floor"):
            raise ConfigError(f"--floor_at_middle: a {manifest.method} model has no reward tags (RiC models do); drop it")
        policy.set_floor(name_list(args.floor_at_middle))
    if args.guidance_scale is not None or args.guidance_against is not None:
        if not hasattr(policy, "set_guidance"):
            raise ConfigError(
                f"--guidance_scale/--guidance_against: a {manifest.method} model has no tag guidance (RiC models do); drop them"
            )
        policy.set_guidance(
            policy.guidance_scale if args.guidance_scale is None else args.guidance_scale,
            args.guidance_against or policy.guidance_against,
        )
    outs = policy.generate(prompts, preference=preference, context=context, **generation_kwargs(args))
    for text in outs:
        print(text.strip())
    return 0


def _write_images(policy, prompts: list[str], preference, context, args) -> int:
    if not args.out:
        raise DataError("this is an image model: pass --out FILE.png for the generated image")
    kwargs = {"seed": args.seed}
    for key in ("num_inference_steps", "guidance_scale"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    images = policy.generate(prompts, preference=preference, context=context, **kwargs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out] if len(images) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}") for i in range(len(images))]
    for image, path in zip(images, paths):
        image.save(path if path.suffix else path.with_suffix(".png"))
        print(path)
    return 0

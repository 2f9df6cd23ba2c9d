"""``pluralign demo --out DIR [--method ric]``: the embedded default, end to end, on CPU, offline.

Builds the demo world (generated reviews scored by VADER sentiment and conciseness, which conflict),
pretrains a tiny GPT-2 on it from scratch (the SFT model), trains the method, and evaluates its front
over the preference grid beside the SFT model: DIR/front.json, DIR/pareto.png, DIR/report.html, DIR/model/.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from pluralign.config import add_generation_flags, generation_kwargs, name_list, parse_args
from pluralign.errors import ConfigError
from pluralign.preferences.tags import GUIDANCE_NEGATIVES
from pluralign.training.seeding import seed_everything

DEMO_METHODS = ("ric", "moslim", "spo", "modpo", "morlhf", "soups", "npdpo", "dpo")


def reviews_hook(method: str) -> ModuleType:
    """The reviews world's ``train_on_demo`` module for ``method`` (one of :data:`DEMO_METHODS`)."""
    if method == "ric":
        from pluralign.worlds.reviews import ric as hook
    elif method == "moslim":
        from pluralign.worlds.reviews import moslim as hook
    elif method == "spo":
        from pluralign.worlds.reviews import spo as hook
    elif method == "modpo":
        from pluralign.worlds.reviews import modpo as hook
    elif method == "morlhf":
        from pluralign.worlds.reviews import morlhf as hook
    elif method == "soups":
        from pluralign.worlds.reviews import soups as hook
    elif method == "npdpo":
        from pluralign.worlds.reviews import npdpo as hook
    else:
        from pluralign.worlds.reviews import dpo as hook
    return hook


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pluralign demo", description=__doc__)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--world",
        default="reviews",
        help="reviews (the toy text world, default) | chat (SmolLM2: relevance vs sentiment on HH prompts) | "
        "hh (SmolLM2: harmless vs helpful on the HH pairs, a reward model trained on them) | images",
    )
    p.add_argument(
        "--method", default="ric", help=f"one of {', '.join(DEMO_METHODS)}; chat and hh worlds: ric, dpo, soups, moslim or several (ric,dpo,soups,moslim)"
    )
    p.add_argument("--work_dir", default=None, help="where the world and the SFT model are cached (default: OUT/world)")
    sizes = p.add_argument_group("sizes of the chat and hh worlds (default: each world's own; smaller for a quick run)")
    for flag, (_field, what) in SIZE_FLAGS.items():
        sizes.add_argument(f"--{flag}", type=int, default=None, help=what)
    sizes.add_argument("--pairs", default=None, help="hh: preference pairs file (prompt/chosen/rejected); default: the shipped HH pairs")
    sizes.add_argument(
        "--guidance_scale",
        type=float,
        default=None,
        help="chat and hh: RiC's classifier-free guidance on the tags (1: plain decoding; hh default 9, chat 1)",
    )
    sizes.add_argument(
        "--guidance_against",
        choices=GUIDANCE_NEGATIVES,
        default=None,
        help="chat and hh: the tags RiC's guidance steers away from: opposite (every desired reward mirrored, "
        "default), raised (only those asked above their middle: nothing is pushed down), neutral",
    )
    sizes.add_argument(
        "--floor_at_middle",
        default=None,
        help="chat and hh: objectives (comma-separated) RiC never asks for less than the middle of their bounds, "
        "'none' for no objective (the default); hh: helpful, whose least helpful answers are off-topic, not refusals",
    )
    sizes.add_argument(
        "--harmless_pooling",
        choices=("mean", "response"),
        default=None,
        help="hh: what the harmless reward model's features average: the response's tokens (default), each "
        "reading the request, or the whole dialogue (mean)",
    )
    sizes.add_argument(
        "--helpful_scorer",
        choices=("relevance", "answer_relevance"),
        default=None,
        help="hh: the helpful objective: MiniLM relevance discounted by the share of the response that copies "
        "the request (answer_relevance, default), or plain relevance",
    )
    sizes.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="chat and hh: bfloat16 matmuls for RiC's training and all generation (fast on a CPU with native "
        "bfloat16 or a GPU; hh default bfloat16, chat float32; --no-bf16: float32)",
    )
    add_generation_flags(p)
    return p


# demo flag -> (ChatSettings field, help)
SIZE_FLAGS = {
    "prompts": ("n_prompts", "training prompts (chat) or training pairs (hh, two samples each)"),
    "eval_prompts": ("n_eval_prompts", "held-out evaluation prompts"),
    "online_iterations": ("online_iterations", "RiC's online MORS iterations (hh default 2, chat 1)"),
    "online_prompts": ("online_prompts", "prompts generated per online iteration"),
    "offline_steps": ("offline_max_steps", "RiC's offline SFT steps (default: 2 epochs)"),
    "online_steps": ("online_max_steps", "SFT steps per online iteration (default: 1 epoch over the buffer)"),
    "tag_levels": ("tag_levels", "chat and hh: RiC's tag levels per objective, quantiles of the training rewards (hh default 10, chat 5)"),
    "base_samples": ("base_samples_per_prompt", "hh: the base model's own samples per training prompt, added to the offline data (hh default 1; 0: the pairs' responses alone)"),
}


def world_sizes(args: argparse.Namespace) -> dict[str, object]:
    """The size flags given, as ChatSettings fields; a one-line error where the world has no such sizes."""
    given = {field: getattr(args, flag) for flag, (field, _) in SIZE_FLAGS.items() if getattr(args, flag) is not None}
    for flag, (field, _) in SIZE_FLAGS.items():
        least = {"online_iterations": 0, "base_samples": 0, "tag_levels": 2}.get(flag, 1)  # 0: no online stage, no base samples
        if field in given and given[field] < least:
            raise ConfigError(f"--{flag} must be at least {least}, got {given[field]}")
    if args.pairs is not None:
        given["pairs"] = args.pairs
    if args.guidance_scale is not None:
        if args.world not in ("chat", "hh"):
            raise ConfigError(f"--guidance_scale: only the chat and hh worlds take it; drop it for --world {args.world}")
        if args.guidance_scale < 1:
            raise ConfigError(f"--guidance_scale must be at least 1 (1: plain decoding), got {args.guidance_scale}")
        given["guidance_scale"] = args.guidance_scale
    if args.guidance_against is not None:
        if args.world not in ("chat", "hh"):
            raise ConfigError(f"--guidance_against: only the chat and hh worlds take it; drop it for --world {args.world}")
        given["guidance_against"] = args.guidance_against
    if args.floor_at_middle is not None:
        if args.world not in ("chat", "hh"):
            raise ConfigError(f"--floor_at_middle: only the chat and hh worlds take it; drop it for --world {args.world}")
        given["floor_at_middle"] = tuple(name_list(args.floor_at_middle))
    if args.bf16 is not None:
        if args.world not in ("chat", "hh"):
            raise ConfigError(f"--bf16/--no-bf16: only the chat and hh worlds take it; drop it for --world {args.world}")
        given["bf16"] = args.bf16
    if given and args.world not in ("chat", "hh"):
        named = [f"--{f}" for f, (field, _) in SIZE_FLAGS.items() if field in given] + ["--pairs"] * ("pairs" in given)
        flags = ", ".join(named)
        raise ConfigError(f"{flags}: only the chat and hh worlds take these sizes; drop them for --world {args.world}")
    for field in ("harmless_pooling", "helpful_scorer"):
        if getattr(args, field) is not None:
            given[field] = getattr(args, field)
    for field, flag in (("pairs", "--pairs"), ("base_samples_per_prompt", "--base_samples"),
                        ("harmless_pooling", "--harmless_pooling"), ("helpful_scorer", "--helpful_scorer")):  # fmt: skip
        if field in given and args.world != "hh":
            raise ConfigError(f"{flag}: only the hh world takes it; use --world hh or drop {flag}")
    return given


def run(argv: Sequence[str]) -> int:
    args = parse_args(build_parser(), argv)
    sizes = world_sizes(args)
    if args.world in ("chat", "hh"):
        from pluralign.worlds.chat.demo import parse_methods, run_chat_demo, world_spec

        spec = world_spec(args.world)
        settings = spec.settings(seed=args.seed, **sizes)
        return run_chat_demo(
            args.out, parse_methods(args.method, spec), args.work_dir, args.seed, generation_kwargs(args, {}), settings, spec
        )
    if args.world == "images":
        from pluralign.worlds.images import demo as image_demo

        return image_demo.run(args)
    if args.world != "reviews":
        raise ConfigError(f"unknown demo --world {args.world!r}; use reviews, chat, hh or images")
    if args.method not in DEMO_METHODS:
        raise ConfigError(f"unknown demo --method {args.method!r}; use one of {', '.join(DEMO_METHODS)}")
    hook = reviews_hook(args.method)
    from pluralign.evaluation.pipeline import evaluate_models, summary_table
    from pluralign.policies import load_policy
    from pluralign.worlds.reviews.world import WorldSettings, build_world

    start = time.time()
    out = Path(args.out)

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {msg}", flush=True)

    progress("demo: building the world and pretraining the tiny SFT model (cached after the first run)")
    # --seed seeds everything: the world's corpus, the SFT model, the method's training and the evaluation
    seed_everything(args.seed)
    world = build_world(
        Path(args.work_dir) if args.work_dir else out / "world", progress=progress, settings=WorldSettings(seed=args.seed)
    )
    progress(f"demo: training {args.method}")
    t = time.time()
    model_dir = hook.train_on_demo(world, out / "model", progress)
    train_seconds = time.time() - t
    progress(f"demo: {args.method} trained in {train_seconds:.1f}s; evaluating the front over the preference grid")
    policy = load_policy(model_dir)
    fronts = evaluate_models(
        {args.method: policy},
        world.base_model,
        world.eval_prompts,
        world.objectives,
        out,
        train_seconds={args.method: train_seconds},
        seed=args.seed,
        title=f"pluralign demo: {args.method} vs sft on the review world",
        progress=progress,
        range_stats=dict(world.objectives.stats),  # range: relative to the training data's spread
        **generation_kwargs(args, world.generation_kwargs),
    )
    print(summary_table(fronts, world.objectives.names))
    progress(f"demo: done; wrote {out / 'front.json'}, {out / 'pareto.png'}, {out / 'report.html'}, {out / 'model'}")
    return 0

"""The cost of a whole front, at matched quality: hypervolume against training time and FLOPs, per method.

Every method starts from the same SFT model and trains through its demo hook
(``pluralign.worlds.reviews.<m>.train_on_demo``; the chat and hh worlds: the demo's own ``TRAINERS`` of
``pluralign.worlds.chat.demo``, from SmolLM2) with a :class:`snapshots.SnapshotCallback` (benchmarks/snapshots.py):
the model is saved along training (RiC: every ``--ric_snapshot_every`` SFT steps and at the end of the
offline stage and of each online iteration; MORLHF and Soups: every ``--rl_snapshot_every`` RLOO steps of
every run). Afterwards each snapshot's whole front is evaluated by the shared pipeline (same prompts,
same preference grid, one hypervolume reference point from the SFT model's outputs).

Accounting. A snapshot's ``seconds`` is the wall time the method spent to get there (model loading,
scoring, generation, training: everything its hook does), summed over its runs (MORLHF: 11 RLOO runs
at step s; Soups: 2). Saving snapshots and evaluating them is excluded (the clock is paused while
saving; evaluation happens after training). Its ``flops`` follow benchmarks/cost_model.py
(6N per trained token, 2N per generated / reference / scored token). Building the world and its SFT
model is shared and counted for no method.

Writes DIR/front.json (the final fronts, every method's ``curves`` and the ``matched`` blocks),
DIR/pareto.png, DIR/report.html, DIR/hv_vs_compute.png (hypervolume against seconds and against FLOPs,
one line per method), DIR/matched.md (the matched table) and DIR/front_cost.json (profile, settings,
whether each RL curve plateaued, the paper-scale projection).

    OMP_NUM_THREADS=1 python benchmarks/front_cost.py --out results/front_cost
    python benchmarks/front_cost.py --world hh --out results/front_cost_hh   # RiC against Rewarded Soups on hh

On the chat and hh worlds the world (and its reward model) is the demo's (``--world_dir`` reuses a demo's
``DIR/world``), sized by the world's defaults and ``--world_set KEY=VALUE`` (ChatSettings fields).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

METHODS = ("ric", "morlhf", "soups")
RL_METHODS = ("morlhf", "soups")
# world name -> its builder, called as builder(work_dir, progress=...) (the chat worlds' also with their spec
# and settings); every method's hook takes the world
WORLDS = {
    "reviews": "pluralign.worlds.reviews.world:build_world",
    "chat": "pluralign.worlds.chat.world:build_chat_world",
    "hh": "pluralign.worlds.chat.world:build_chat_world",
}
CHAT_WORLDS = ("chat", "hh")  # SmolLM2 worlds built by one code path from a WorldSpec (pluralign.worlds.chat)
# world name -> its methods' training hooks: hook(world, out_dir, progress, callbacks=[...], **overrides) -> model dir
HOOKS = {
    "reviews": "pluralign.worlds.reviews.{method}:train_on_demo",
    "chat": "pluralign.worlds.chat.demo:TRAINERS",
    "hh": "pluralign.worlds.chat.demo:TRAINERS",  # the hh demo's own trainers: the same RiC and Soups runs
}
# MORLHF's 11 RLOO runs of SmolLM2 would take hours: Rewarded Soups is the chat worlds' RL baseline
DEFAULT_METHODS = {"reviews": list(METHODS), "chat": ["ric", "soups"], "hh": ["ric", "soups"]}

# RiC trains with the demo's own settings (pluralign.worlds.reviews.ric.demo_config), so the benchmark
# measures the RiC a user gets from `pluralign demo`. Until 2026-12 it ran "cost settings" instead (one
# offline epoch, four online iterations, 500 offline samples per online buffer, generation batch 128),
# chosen on one loaded run where they reached 16.1; re-measured they stop near 14.4, below the demo's
# front (docs/front_cost.md, "Why the benchmark's RiC was below the demo's"). Pass them with --ric_set
# to compare. More online iterations: --ric_online_iterations N (the report says where the front stops).
# RLOO settings of the cost benchmark on top of DEMO_RL_SETTINGS, the same for MORLHF and Soups.
RL_COST_SETTINGS: dict[str, Any] = {}
# Per world: RiC's overrides of its demo's settings (none: each world's RiC is its demo's), RL steps per run
# and snapshot intervals (chat: ChatSettings' RL steps; each SmolLM2 RLOO step costs ~20 s).
WORLD_DEFAULTS: dict[str, dict[str, Any]] = {
    "reviews": {"ric": {}, "rl_steps": 100, "rl_snapshot_every": 20, "ric_snapshot_every": 63},
    "chat": {"ric": {}, "rl_steps": None, "rl_snapshot_every": 4, "ric_snapshot_every": 24},
    # the hh demo's own settings (HH_DEFAULTS: 100 offline steps and two online iterations since stop 44,
    # 12 RLOO steps per objective)
    "hh": {"ric": {}, "rl_steps": None, "rl_snapshot_every": 4, "ric_snapshot_every": 20},
}


def training_hook(world_name: str, method: str) -> Callable[..., Any] | None:
    """The function that trains ``method``'s whole front on the world, or None where the world has none."""
    module, _, name = HOOKS[world_name].format(method=method).partition(":")
    if importlib.util.find_spec(module) is None:
        return None
    hook = getattr(importlib.import_module(module), name, None)
    return hook.get(method) if isinstance(hook, dict) else hook


def available(world_name: str, methods: list[str]) -> tuple[list[str], list[str]]:
    """Methods with a training hook on the world, and those skipped because they have none (yet)."""
    present = [m for m in methods if training_hook(world_name, m) is not None]
    return present, [m for m in methods if m not in present]


def overrides_for(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides of one method's demo hook in this benchmark."""
    if method == "ric":
        out = {**WORLD_DEFAULTS[args.world]["ric"], "include_num_input_tokens_seen": "non_padding"}
        if args.ric_epochs is not None:
            out["num_train_epochs"] = args.ric_epochs
        if args.ric_online_iterations is not None:
            out["online_iterations"] = args.ric_online_iterations
        return {**out, **parse_sets(args.ric_set)}
    out = {**RL_COST_SETTINGS, **parse_sets(args.rl_set)}
    if method in RL_METHODS and args.rl_steps is not None:  # chat: ChatSettings.rl_steps unless given
        out["max_steps"] = args.rl_steps
    if method == "morlhf" and args.morlhf_grid_points is not None:
        out["grid_points"] = args.morlhf_grid_points
    return out


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE read as JSON when it parses, else as text) -> config overrides."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--ric_set/--rl_set/--world_set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_world(name: str, work_dir: Path, progress, settings: dict[str, Any] | None = None) -> Any:
    """The world every method trains on, built (or loaded) by ``WORLDS[name]`` ("module:function"); a chat
    world (``chat``, ``hh``) with its spec's settings and ``settings`` over them (``--world_set``)."""
    module, _, function = WORLDS[name].partition(":")
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"--world {name}: this version of pluralign has no {module}; use --world reviews")
    builder = getattr(importlib.import_module(module), function)
    if name in CHAT_WORLDS:
        from pluralign.worlds.chat.demo import world_spec

        spec = world_spec(name)
        try:
            chat_settings = spec.settings(**(settings or {}))
        except TypeError as exc:
            raise SystemExit(f"--world_set: {exc}; the fields are ChatSettings' (pluralign.worlds.chat.world)") from exc
        return builder(work_dir, progress=progress, settings=chat_settings, spec=spec)
    if settings:
        raise SystemExit(f"--world_set: only the {' and '.join(CHAT_WORLDS)} worlds take settings")
    return builder(work_dir, progress=progress)


def policy_parameters(model_dir: str) -> int:
    from cost_model import count_parameters

    from pluralign.models.loading import load_causal_lm

    return count_parameters(load_causal_lm(model_dir, device="cpu"))


def text_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def sample_text(tokenizer, prompt: Any, response: str) -> str:
    """A sample as the policy reads it: a conversational prompt (the hh world's) rendered by the chat template."""
    from pluralign.generation.prompts import render_prompt

    return (prompt if isinstance(prompt, str) else render_prompt(tokenizer, prompt)) + response


def ric_tokens_outside_trainers(world: Any, model_dir: Path, tokenizer) -> dict[str, float]:
    """Tokens RiC processes outside its trainers: offline scoring, and per online iteration generation + scoring."""
    out = {"score": float(text_tokens(tokenizer, [sample_text(tokenizer, s["prompt"], s["response"]) for s in world.train]))}
    for stage in sorted(model_dir.glob("online_*")):
        rows = [json.loads(line) for f in stage.glob("generations.rank*.jsonl") for line in f.read_text().splitlines()]
        out[stage.name] = float(text_tokens(tokenizer, [sample_text(tokenizer, r["prompt"], r["response"]) for r in rows]))
    return out


def trainable_parameters(model_dir: Path) -> int | None:
    """Parameters of one run's LoRA adapters under ``model_dir`` (None for full fine-tuning)."""
    from safetensors.torch import load_file

    for f in sorted(model_dir.rglob("adapter_model.safetensors")):
        return sum(t.numel() for t in load_file(str(f)).values())
    return None


def snapshot_flops(
    method: str, entry: dict[str, Any], n: int, n_rm: int, beta: float, ric_extra: dict, trainable: int | None = None
) -> float:
    """FLOPs to reach a snapshot; ``trainable``: LoRA parameters (a trained token costs 4N + 6N_trainable)."""
    from cost_model import TokenLedger, rloo_tokens

    if method in RL_METHODS:
        return rloo_tokens(entry["tokens"], beta).flops(n, n_rm, trainable)
    ledger = TokenLedger(trained=entry["tokens"], scored=ric_extra.get("score", 0.0))
    if entry["stage"].startswith("online_"):
        done = int(entry["stage"].split("_")[1])
        for k in range(1, done + 1):
            gen = ric_extra.get(f"online_{k}", 0.0)
            ledger = ledger + TokenLedger(forward=gen, scored=gen)
    return ledger.flops(n, n_rm, trainable)


def profile(method: str, events: list[dict[str, Any]], total: float) -> dict[str, float]:
    """Where a method's training time went, from its trainers' begin/end on the clock."""
    if method in RL_METHODS:
        rl = sum(e["end"] - e["begin"] for e in events)
        return {"rloo_trainers": rl, "loading_and_setup": total - rl, "total": total}
    out: dict[str, float] = {}
    last = 0.0
    for e in events:
        gap = "scoring_and_setup" if e["stage"] == "offline" else f"{e['stage']}_generation_and_scoring"
        out[gap] = e["begin"] - last
        out[f"{e['stage']}_sft"] = e["end"] - e["begin"]
        last = e["end"]
    out["export"] = total - last
    out["total"] = total
    return out


def plot_curves(curves: dict[str, list[dict]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, curve in curves.items():
        hv = [p["hypervolume"] for p in curve]
        axes[0].plot([p["seconds"] for p in curve], hv, "-o", ms=4, label=method)
        axes[1].plot([p["flops"] for p in curve], hv, "-o", ms=4, label=method)
    axes[0].set_xlabel("cumulative training wall time (s)")
    axes[1].set_xlabel("cumulative training FLOPs")
    axes[1].ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    for ax in axes:
        ax.set_ylabel("hypervolume of the whole front")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def matched_markdown(blocks: list[dict[str, Any]], final_hv: dict[str, float]) -> str:
    """The matched table of docs/front_cost.md, from front.json's matched blocks."""

    def num(x: float | None, fmt: str) -> str:
        return "never" if x is None else format(x, fmt)

    rows = [
        "| target | target's best HV | target s to reach it | RiC s to reach it | time ratio "
        "| target FLOPs | RiC FLOPs | FLOP ratio | final HV target / RiC | RiC's best HV: RiC s / target s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for b in blocks:
        m = b["target_method"]
        rows.append(
            f"| {m} | {b['target_hv']:.2f} | {b['target_seconds']:.1f} | {num(b['ric_seconds_to_match'], '.1f')} "
            f"| {num(b['time_ratio'], '.3f')} | {b['target_flops']:.2e} | {num(b['ric_flops_to_match'], '.2e')} "
            f"| {num(b['flops_ratio'], '.3f')} | {final_hv.get(m, float('nan')):.2f} / {final_hv.get('ric', float('nan')):.2f} "
            f"| {b['ric_hv_best']:.2f}: {b['ric_seconds_to_best']:.1f} / {num(b['target_seconds_to_ric_best'], '.1f')} |"
        )
    return "\n".join(rows) + "\n"


def stages_markdown(stop: dict[str, Any]) -> str:
    """RiC's hypervolume after each stage (offline, online iterations) against the RL baselines' best fronts."""
    targets = stop["targets"]
    rows = [
        "| RiC stage | cumulative s | FLOPs | HV | gain | "
        + " | ".join(f"gap to {m}'s best ({t['target_hv']:.2f})" for m, t in targets.items())
        + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(targets),
    ]
    for r in stop["stages"]:
        gaps = " | ".join(f"{t['target_hv'] - r['hypervolume']:+.2f}" for t in targets.values())
        mark = " (stops)" if r["stage"] == stop["stops_at"] else ""
        rows.append(
            f"| {r['stage']}{mark} | {r['seconds']:.1f} | {r['flops']:.2e} | {r['hypervolume']:.2f} | {r['gain']:+.2f} |"
            + (f" {gaps} |" if targets else "")
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--world", choices=list(WORLDS), default="reviews", help="built-in world (default: reviews)")
    parser.add_argument("--world_dir", default=None, help="world cache (default: OUT/world); reuse to save time")
    parser.add_argument(
        "--world_set", nargs="*", default=[], help="chat and hh worlds: ChatSettings overrides KEY=VALUE (sizes, base_model)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=None, choices=METHODS, help="methods to run (default: reviews all, chat and hh ric soups)"
    )
    parser.add_argument("--morlhf_grid_points", type=int, default=None, help="MORLHF grid resolution (default 10)")
    parser.add_argument("--rl_steps", type=int, default=None, help="RLOO steps per MORLHF/Soups run (reviews: 100)")
    parser.add_argument("--rl_snapshot_every", type=int, default=None, help="RLOO steps between snapshots (20; chat 4)")
    parser.add_argument("--ric_snapshot_every", type=int, default=None, help="SFT steps between RiC snapshots (63; chat 24)")
    parser.add_argument("--ric_epochs", type=float, default=None, help="RiC offline epochs")
    parser.add_argument(
        "--ric_online_iterations",
        type=int,
        default=None,
        help="RiC online MORS iterations (default: the demo's, 1); more show where RiC's front stops",
    )
    parser.add_argument("--ric_set", nargs="*", default=[], help="RiCConfig overrides KEY=VALUE")
    parser.add_argument("--rl_set", nargs="*", default=[], help="RLOO config overrides KEY=VALUE (MORLHF and Soups)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for key in ("rl_steps", "rl_snapshot_every", "ric_snapshot_every"):
        if getattr(args, key) is None:
            setattr(args, key, WORLD_DEFAULTS[args.world][key])

    import torch
    from cost_model import CurvePoint, matched, paper_projection, plateaued, reward_model_parameters, where_it_stops
    from snapshots import SnapshotCallback, Stopwatch, materialise, tag_totals

    from pluralign.evaluation.front import evaluate_front, finalise
    from pluralign.evaluation.pipeline import sft_front, summary_table, write_results
    from pluralign.generation.precision import use_precision
    from pluralign.models.loading import load_tokenizer
    from pluralign.policies import load_policy
    from pluralign.preferences.weights import preference_grid
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()
    out = Path(args.out)
    start = time.time()

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:7.1f}s] {msg}", flush=True)

    world_settings = {"seed": args.seed, **parse_sets(args.world_set)} if args.world in CHAT_WORLDS else parse_sets(args.world_set)
    world = load_world(args.world, Path(args.world_dir) if args.world_dir else out / "world", progress, world_settings)
    present, skipped = available(args.world, args.methods or DEFAULT_METHODS[args.world])
    # the world's own evaluation grid (the chat world's is coarser: each point costs SmolLM2 generations)
    grid = [list(w) for w in preference_grid(len(world.objectives), getattr(world.settings, "grid_points", None))]
    gen = world.generation_kwargs
    n_policy = policy_parameters(world.base_model)
    tokenizer = load_tokenizer(world.base_model)
    # every generation in the world's precision (ChatSettings.bf16, as RiC trains), as `pluralign demo` does
    with use_precision(world.settings.precision() if hasattr(world.settings, "precision") else "fp32"):
        base, norm = sft_front(world.base_model, world.eval_prompts, world.objectives, grid, seed=args.seed, **gen)
        final_fronts, curves, profiles, overrides, eval_seconds = [base], {}, {}, {}, {}
        # load the objectives' models now (scores may come from caches), so reward-model parameters count for all
        world.objectives.score([world.train[0]["prompt"]], [world.train[0]["response"]])
        for method in present:
            hook = training_hook(args.world, method)
            overrides[method] = overrides_for(method, args)
            every = args.ric_snapshot_every if method == "ric" else args.rl_snapshot_every
            clock = Stopwatch()
            callback = SnapshotCallback(out / "snapshots" / method, clock, every_steps=every)
            progress(f"{method}: training its whole front from the SFT model, snapshots every {every} steps")
            model_dir = Path(hook(world, out / "models" / method, progress, callbacks=[callback], **overrides[method]))
            total = clock.elapsed()
            profiles[method] = profile(method, callback.events, total)
            progress(f"{method}: trained in {total:.1f}s (saving snapshots excluded)")
            ric_extra = ric_tokens_outside_trainers(world, model_dir, tokenizer) if method == "ric" else {}
            rl_beta = getattr(world.settings, "rl_beta", 0.05)  # the chat worlds' RL runs take it from their settings
            beta = float(overrides[method].get("beta", rl_beta)) if method in RL_METHODS else 0.0
            n_rm = reward_model_parameters(world.objectives[n] for n in world.objectives.names)
            trainable = trainable_parameters(model_dir)
            t = time.time()
            fronts = []
            for entry in tag_totals(callback.snapshots):
                policy = load_policy(materialise(out / "snapshots" / method / entry["tag"], model_dir))
                front = evaluate_front(
                    policy, world.eval_prompts, world.objectives, grid, method=method, seed=args.seed, **gen
                )
                front.wall_seconds = entry["seconds"]
                fronts.append((entry, front))
            eval_seconds[method] = time.time() - t
            finalise([base] + [f for _, f in fronts], norm, world.objectives.names)  # sets their hypervolumes
            curves[method] = [CurvePoint("sft", 0.0, 0.0, base.hypervolume, {"stage": "start", "step": 0, "tokens": 0})] + [
                CurvePoint(
                    label=entry["tag"],
                    seconds=entry["seconds"],
                    flops=snapshot_flops(method, entry, n_policy, n_rm, beta, ric_extra, trainable),
                    hypervolume=front.hypervolume,
                    extra={"stage": entry["stage"], "step": entry["step"], "tokens": entry["tokens"]},
                )
                for entry, front in fronts
            ]
            final_fronts.append(fronts[-1][1])
            progress(
                f"{method}: {len(fronts)} snapshots evaluated in {eval_seconds[method]:.1f}s; HV "
                + ", ".join(f"{p.hypervolume:.2f}@{p.seconds:.0f}s" for p in curves[method])
            )
    matched_blocks = [matched(m, curves[m], curves["ric"]) for m in RL_METHODS if m in curves and "ric" in curves]
    targets = {m: max(p.hypervolume for p in curves[m]) for m in RL_METHODS if m in curves}
    ric_stop = where_it_stops(curves["ric"], targets) if "ric" in curves else None
    extra = {
        "curves": {m: [p.to_dict() for p in c] for m, c in curves.items()},
        "matched": matched_blocks,
        "accounting": "seconds: training wall time, snapshot saving and evaluation excluded, summed over a "
        "method's runs; flops: benchmarks/cost_model.py (6N trained, 2N generated/reference/scored token)",
    }
    title = f"Whole fronts on the {args.world} world, same SFT start"
    write_results(final_fronts, norm, world.objectives.names, out, title=title, extra=extra, range_stats=dict(world.objectives.stats))
    plot_curves(extra["curves"], out / "hv_vs_compute.png", f"Hypervolume against compute ({args.world} world)")
    result = {
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
        "date": date.today().isoformat(),
        "torch_threads": torch.get_num_threads(),
        "world": args.world,
        "policy_parameters": n_policy,
        "reward_model_parameters": n_rm,
        "matched": matched_blocks,
        "plateau": {m: plateaued(c) for m, c in curves.items()},
        "ric_stages": ric_stop,
        "profile_seconds": profiles,
        "evaluation_seconds": eval_seconds,
        "overrides": overrides,
        "rl_snapshot_every": args.rl_snapshot_every,
        "ric_snapshot_every": args.ric_snapshot_every,
        "skipped": skipped,
        "eval_prompts": len(world.eval_prompts),
        "generation_kwargs": gen,
        "paper_projection": paper_projection(),
        "wall_seconds_of_benchmark": time.time() - start,
    }
    (out / "front_cost.json").write_text(json.dumps(result, indent=2))
    table = matched_markdown(matched_blocks, {f.method: f.hypervolume for f in final_fronts})
    if ric_stop is not None:
        table += "\n" + stages_markdown(ric_stop)
    (out / "matched.md").write_text(table)
    print(summary_table(final_fronts, world.objectives.names))
    for m in curves:
        print(f"{m:<8} " + "  ".join(f"{p.hypervolume:.2f}@{p.seconds:.0f}s/{p.flops:.2g}F" for p in curves[m]))
    for b in matched_blocks:
        t = b["ric_seconds_to_match"]
        print(
            f"matched {b['target_method']}: best HV {b['target_hv']:.3f} first reached at {b['target_seconds']:.1f}s "
            f"({b['target_flops']:.3g} FLOPs); RiC "
            + (
                f"reached it at {t:.1f}s ({b['ric_flops_to_match']:.3g} FLOPs): time ratio {b['time_ratio']:.3f}, "
                f"FLOP ratio {b['flops_ratio']:.3f}"
                if t is not None
                else f"never reached it (best {b['ric_hv_best']:.3f})"
            )
        )
        tb = b["target_seconds_to_ric_best"]
        print(
            f"  reverse: RiC's best HV {b['ric_hv_best']:.3f} reached by RiC at {b['ric_seconds_to_best']:.1f}s, by "
            f"{b['target_method']} " + ("never" if tb is None else f"at {tb:.1f}s")
        )
    if ric_stop is not None:
        print(
            f"RiC's front stops at {ric_stop['stops_at']}: HV {ric_stop['stop_hv']:.3f} at {ric_stop['stop_seconds']:.1f}s"
            + (" (still rising at its last stage: raise --ric_online_iterations)" if ric_stop["still_rising"] else "")
            + "".join(
                f"; {m}'s best {t['target_hv']:.3f} "
                + ("reached" if t["reached"] else f"not reached (gap {t['gap_at_best']:.3f})")
                for m, t in ric_stop["targets"].items()
            )
        )
    for m in RL_METHODS:
        if m in curves and not result["plateau"][m]["plateaued"]:
            print(f"{m}: its hypervolume was still improving at the last snapshot; raise --rl_steps")
    print(table)
    print(f"wrote {out / 'front.json'}, {out / 'hv_vs_compute.png'}, {out / 'front_cost.json'}, {out / 'matched.md'}")
    return result


if __name__ == "__main__":
    main()

"""The personal world: SmolLM2's own responses to HH requests, scored by K = 4 real scorers.

The response pool of the personalisation benchmark (``benchmarks/personal.py``, METHODS.md §8), built
through the chat worlds' one code path (:func:`~pluralign.worlds.chat.world.build_chat_world`):

1. the shipped HH-RLHF harmless pairs are split by pair id with the run's seed (``held_out_fraction``);
2. ``harmless`` is a BTL reward model (a linear Bradley-Terry head on MiniLM features) trained by
   pluralign's own :func:`~pluralign.reward_models.btl.trainer.train_btl` on the training split, cached in
   ``work_dir/harmless_rm``; ``relevance`` (MiniLM), ``sentiment`` (VADER) and ``conciseness`` (minus the
   word count) are built-in scorers;
3. the prompts are first user turns of held-out pairs that no training pair holds (so the reward model
   never saw them): ``n_prompts`` *training* prompts (RiC's offline data, the training users' choices)
   and ``n_eval_prompts`` *test* prompts (the unseen users' choices, the steering prompts);
4. SmolLM2 samples ``responses_per_prompt`` responses to each prompt at temperature 0.9 (top-p 0.95),
   chunk by chunk into ``work_dir/base_samples.jsonl`` (a rerun samples only what is missing);
5. every response is scored by the four objectives (cached in SQLite); the z-score statistics are fitted
   on the whole pool, as PersonalLLM normalises over its response pool.

Prompts are chat messages everywhere: SmolLM2 renders them with its chat template, the MiniLM reward model
and the NP-BTL features read them as ``role: content`` lines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.jsonl import write_jsonl
from pluralign.data.loading import response_text
from pluralign.errors import DataError
from pluralign.generation.prompts import render_prompt
from pluralign.objectives import ObjectiveSet
from pluralign.worlds.chat.hh import held_out_prompts, split_hh_pairs
from pluralign.worlds.chat.world import WorldContext, WorldData, WorldSpec, objective_correlation, sample_base

HARMLESS = "harmless"
OBJECTIVES = (HARMLESS, "relevance", "sentiment", "conciseness")
RM_DIR = "harmless_rm"
RM_PAIRS = "harmless_train_pairs.jsonl"
TEMPERATURE = 0.9
TRAIN, TEST = "train", "test"

# sized for the benchmark's 15 minutes on 2 idle cores: 96 prompts x 3 responses x 40 new tokens (about
# 2.5 minutes of sampling); 3 responses give 3 pairs per prompt: 192 training and 96 test pairs per user
PERSONAL_DEFAULTS: dict[str, Any] = {
    "n_prompts": 64,
    "n_eval_prompts": 32,
    "responses_per_prompt": 3,
    "max_new_tokens": 40,
    "online_iterations": 0,
}


def harmless_reward_model(ctx: WorldContext, train_pairs: list[dict]) -> Path:
    """The ``harmless`` BTL reward model trained on ``train_pairs`` by ``train reward-model --type btl``'s
    library function with its default settings; reused once trained."""
    from pluralign.objectives.trained import EVAL_FILE
    from pluralign.reward_models.btl.config import BTLConfig
    from pluralign.reward_models.btl.trainer import train_btl

    rm_dir = ctx.work_dir / RM_DIR
    results = rm_dir / EVAL_FILE
    if not results.is_file():
        t = time.time()
        data = ctx.work_dir / RM_PAIRS
        write_jsonl(
            data, [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in train_pairs]
        )
        config = BTLConfig(output_dir=str(rm_dir), dataset=str(data), skip_invalid_pairs=True, seed=ctx.settings.seed)
        ctx.log(
            f"personal world: training the {HARMLESS} BTL reward model on {len(train_pairs)} pairs (cached after the first run)"
        )
        train_btl(config, progress=lambda m: ctx.log(f"personal world: reward model: {m}"))
        ctx.seconds["reward_model"] = round(time.time() - t, 1)
    held = json.loads(results.read_text())
    ctx.log(
        f"personal world: {HARMLESS} reward model {rm_dir}: held-out pairwise accuracy "
        f"{held.get('pairwise_accuracy', float('nan')):.3f} on {held.get('pairs', 0)} pairs (95% CI {held.get('ci95')})"
    )
    return rm_dir


def _objectives(ctx: WorldContext) -> list[dict[str, Any]]:
    train_pairs, _ = split_hh_pairs(ctx)
    rm = harmless_reward_model(ctx, train_pairs)
    return [
        {"name": HARMLESS, "type": "reward_model", "model": str(rm)},
        {"name": "relevance", "type": "builtin", "scorer": "relevance"},
        {"name": "sentiment", "type": "builtin", "scorer": "sentiment"},
        {"name": "conciseness", "type": "builtin", "scorer": "conciseness"},
    ]


def _build(ctx: WorldContext, objectives: ObjectiveSet) -> WorldData:
    s = ctx.settings
    train_pairs, held_pairs = split_hh_pairs(ctx)
    users, excluded = held_out_prompts(train_pairs, held_pairs, s.n_prompts + s.n_eval_prompts, s.seed)
    if len(users) < s.n_prompts + s.n_eval_prompts:
        raise DataError(
            f"the held-out pairs give {len(users)} fresh requests, fewer than n_prompts + n_eval_prompts = "
            f"{s.n_prompts + s.n_eval_prompts}; raise held_out_fraction or lower the prompt counts"
        )
    prompts = [[{"role": "user", "content": u}] for u in users]
    plan = [
        {"i": s.responses_per_prompt * j + r, "prompt_id": j, "temperature": TEMPERATURE}
        for j in range(len(prompts))
        for r in range(s.responses_per_prompt)
    ]
    done = sample_base(ctx, plan, lambda row: render_prompt(ctx.tokenizer, prompts[row["prompt_id"]]))
    train = []
    for row in plan:
        text = response_text(done[row["i"]]["response"])
        if text.strip():
            j = row["prompt_id"]
            split = TRAIN if j < s.n_prompts else TEST
            train.append({"prompt": prompts[j], "response": text, "prompt_id": j, "split": split})
    ctx.log(
        f"personal world: {len(train)} non-empty responses of {len(plan)} to {s.n_prompts} training and "
        f"{s.n_eval_prompts} test prompts ({excluded} held-out requests left out: a training pair holds them)"
    )
    return WorldData(train, prompts[s.n_prompts :])


def _describe(ctx: WorldContext, objectives: ObjectiveSet, train: list[dict]) -> dict[str, Any]:
    from pluralign.objectives.trained import EVAL_FILE

    names = objectives.names
    corr = {
        f"{a}~{b}": objective_correlation([r[f"score_{a}"] for r in train], [r[f"score_{b}"] for r in train])["pearson"]
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    ctx.log(
        "personal world: correlations between objectives on the pool: "
        + ", ".join(f"{k} {v:+.2f}" for k, v in corr.items())
    )
    held = json.loads((Path(objectives[HARMLESS].model_dir) / EVAL_FILE).read_text())
    return {
        "reward_model": {
            "dir": str(objectives[HARMLESS].model_dir),
            "held_out": {
                k: held.get(k) for k in ("pairwise_accuracy", "ci95", "pairs", "train_pairs", "train_seconds")
            },
        },
        "pairwise_correlation": corr,
        "responses": {split: sum(r["split"] == split for r in train) for split in (TRAIN, TEST)},
        "mean_scores": {n: float(np.mean([r[f"score_{n}"] for r in train])) for n in names},
    }


PERSONAL = WorldSpec(
    name="personal",
    objectives=_objectives,
    build=_build,
    describe=_describe,
    dpo_pairs=lambda world, tokenizer: {},
    world_fields=(
        "n_prompts",
        "n_eval_prompts",
        "responses_per_prompt",
        "max_new_tokens",
        "seed",
        "base_model",
        "pairs",
        "held_out_fraction",
    ),  # fmt: skip
    methods=("ric",),
    defaults=PERSONAL_DEFAULTS,
    base_front="base",
    range_from_data=True,
    description="harmless (a BTL reward model on the HH pairs), relevance, sentiment and conciseness of SmolLM2's own responses",
)

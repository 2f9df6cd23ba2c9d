"""The hh world (``pluralign demo --world hh``): helpful against harmless on real human choices.

The RiC paper's HH experiment at CPU scale, through the chat worlds' one code path (:mod:`.world`):

1. the shipped HH-RLHF harmless pairs (or ``settings.pairs``) are split by pair id with the run's seed
   (``held_out_fraction`` held out);
2. ``harmless`` is a reward model trained by pluralign's own ``train reward-model --type btl`` (the best
   default measured that fits the world's time budget; ``harmless_rm="npbtl"`` or ``"classifier"`` for the others),
   through its library function with its default settings and ``skip_invalid_pairs``, on the training
   split; it is cached in ``work_dir/harmless_rm`` (a rerun reuses it) and its held-out accuracy is printed;
3. ``helpful`` is the MiniLM relevance of the response to the request, discounted by the share of the
   response that copies the request (built-in ``answer_relevance``; ``helpful_scorer="relevance"`` for
   the plain cosine);
4. the offline data is the training split's own responses, chosen AND rejected, each a sample scored by
   both objectives (RiC's offline stage); ``n_prompts`` pairs whose dialogue has at most
   ``max_user_turns`` user turns; optionally the base model's own samples of the same prompts;
5. the evaluation prompts are first user turns of held-out pairs that no training pair holds as a turn,
   so they reach neither the reward model nor RiC (its online stage draws from the offline prompts).

Prompts are chat messages everywhere (training, scoring, evaluation): SmolLM2 renders them with its chat
template and the reward model, whose MiniLM backbone has none, reads them as ``role: content`` lines in
training and in scoring alike.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.jsonl import write_jsonl
from pluralign.data.loading import response_text
from pluralign.errors import ConfigError, DataError
from pluralign.generation.prompts import chat_messages, render_prompt
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples
from pluralign.worlds.chat.world import (
    TEMPERATURES,
    ChatSettings,
    ChatWorld,
    WorldContext,
    WorldData,
    WorldSpec,
    objective_correlation,
    sample_base,
)

HARMLESS, HELPFUL = "harmless", "helpful"
RM_DIR = "harmless_rm"
RM_PAIRS = "harmless_train_pairs.jsonl"

# sized so RiC end to end (world, reward model, RiC, evaluation) fits about 20 minutes on 2 idle cores:
# 200 single-turn pairs, their two responses and one base-model sample each = 600 offline samples, 100
# LoRA steps of 8 and the paper's two online MORS iterations, in bfloat16; 48 new tokens (HH answers to one
# request average 25-33 words); 32 held-out prompts (the per-prompt steering share moves in 1/32 steps).
# The base samples widen what the tags can select: with the pairs' responses alone RiC did not steer
# (docs/hh_world.md, "Results"). Until stop 44: 128 pairs, 80 float32 steps, one online iteration, tags of
# 5 levels; the stop-44 settings steer every seed of four at 0.8 or more and widen both ranges past 0.5
# on average (docs/hh_world.md "Two online iterations and finer tags")
HH_DEFAULTS: dict[str, Any] = {
    "n_prompts": 200,
    "base_samples_per_prompt": 1,
    "offline_max_steps": 100,
    # the paper's two MORS iterations: the second relabels the model's own answers to tags it can follow
    "online_iterations": 2,
    # the tags show each reward's decile (10 levels): the top and bottom levels mark the tenth of the
    # samples that is most (least) harmless or helpful, not a fifth
    "tag_levels": 10,
    # bfloat16 matmuls (weights float32): LoRA steps 1.4x, generation 1.5x faster on a CPU with native
    # bfloat16, which pays for most of the second online iteration (20 min 30 s end to end, seed 0)
    "bf16": True,
    "n_eval_prompts": 32,
    "max_new_tokens": 48,
    "dpo_pairs": 128,
    # RiC decodes with classifier-free guidance on its tags, against the mirrored tags: at this scale the
    # tags alone move greedy answers little (per-prompt shares 0.33 / 0.30 over three seeds); scale 9 steers
    # more prompts than 7 on each of three seeds (shares 0.89 / 0.89 against 0.82 / 0.80) at the same ranges
    # (docs/hh_world.md "Guidance on the tags", "Scale 9")
    "guidance_scale": 9.0,
    # RiC's tags from each sample's rewards minus its prompt's offline mean: a third of the harmless model's
    # variance is the request's own level, which no answer changes; over four seeds the front rose on every
    # seed (HV 12.38 against 11.94) and harmlessness's range from 0.40 to 0.46 (docs/hh_world.md
    # "Prompt-centred tags", pluralign.methods.ric.centering)
    "center_rewards": "prompt",
    # the harmless model's features average the response's tokens only (each still reads the request): on
    # the world's 199 held-out pairs 0.637 against 0.602 over four seeds, and over four RiC runs the middle
    # point reached the base model on two seeds (one before); docs/hh_world.md "A harmless model that reads
    # the response"
    "harmless_pooling": "response",
    # helpful discounts the share of the response that copies the request: relevance scored an echo of
    # the request ("Can you buy anthrax online?") near 1, above real answers (docs/hh_world.md "An echo
    # is not an answer")
    "helpful_scorer": "answer_relevance",
}


def as_messages(prompt: Any) -> list[dict[str, str]]:
    """A pair's prompt as chat messages (an HH string split into its turns; other text one user turn)."""
    if isinstance(prompt, list):
        return [{"role": str(m.get("role", "user")), "content": str(m.get("content", "")).strip()} for m in prompt]
    return chat_messages(str(prompt))


def user_turns(messages: list[dict[str, str]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


def load_hh_pairs(path: str | Path | None) -> list[dict[str, Any]]:
    """The pairs as ``{"prompt": messages, "chosen": text, "rejected": text}`` (invalid pairs dropped, as
    ``--skip_invalid_pairs`` does); default: the shipped HH-RLHF harmless pairs."""
    from pluralign.data.pairs import load_pairs
    from pluralign.worlds.chat.assets import hh_harmless_pairs

    rows = load_pairs(str(path or hh_harmless_pairs()), skip_invalid=True, report=None)
    out = []
    for r in rows:
        chosen, rejected = response_text(r["chosen"]), response_text(r["rejected"])
        messages = as_messages(r["prompt"])
        if chosen and rejected and chosen != rejected and user_turns(messages):
            out.append({"prompt": messages, "chosen": chosen, "rejected": rejected})
    if not out:
        raise DataError(f"{path}: no usable pairs (prompt with a user turn, two different responses)")
    return out


def hh_split(settings: ChatSettings) -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs) of the hh world with ``settings``: its pairs split by pair id with
    its seed, the split its reward model and evaluation prompts come from."""
    from pluralign.data.pairs import split_pairs

    train, held = split_pairs(load_hh_pairs(settings.pairs), settings.held_out_fraction, settings.seed)
    return list(train), list(held)


def split_hh_pairs(ctx: WorldContext) -> tuple[list[dict], list[dict]]:
    """:func:`hh_split` of the world's settings, computed once per run."""
    if "split" not in ctx.data:
        ctx.data["split"] = hh_split(ctx.settings)
    return ctx.data["split"]


# the harmless reward model's types (docs/reward_models.md, 5 splits): btl, a linear Bradley-Terry head on
# MiniLM's 4th block, 0.646 in about a minute; npbtl at k = 0 (0.659 there, but 0.608 against btl's 0.598 on
# the world's own 199 held-out pairs, 2 pairs apart) on the same features; the MiniLM classifier (0.653)
HARMLESS_RM_TYPES = ("btl", "npbtl", "classifier")


HARMLESS_POOLINGS = ("mean", "response")


def _rm_config(kind: str, rm_dir: Path, data: Path, seed: int, pooling: str = "mean") -> tuple[Any, Callable[..., Path]]:
    """``train reward-model --type kind``'s config (its defaults, ``skip_invalid_pairs``, btl and npbtl's
    features pooled by ``pooling``) and trainer."""
    if pooling not in HARMLESS_POOLINGS:
        raise ConfigError(f"harmless_pooling={pooling!r}: use one of {', '.join(HARMLESS_POOLINGS)}")
    if pooling != "mean" and kind not in ("btl", "npbtl"):
        raise ConfigError(f"harmless_pooling={pooling!r} needs harmless_rm btl or npbtl (frozen features), "
                          f"not {kind!r}: set harmless_pooling='mean' for it")  # fmt: skip
    if kind == "btl":
        from pluralign.reward_models.btl.config import BTLConfig
        from pluralign.reward_models.btl.trainer import train_btl

        # its features are cached with the world, so a fresh world folder is a fresh start
        config = BTLConfig(output_dir=str(rm_dir), dataset=str(data), skip_invalid_pairs=True, seed=seed,
                           embedding_cache=str(rm_dir.parent / "rm_features"), embedding_pooling=pooling)  # fmt: skip
        return config, train_btl
    if kind == "npbtl":
        from pluralign.reward_models.npbtl.config import NPBTLConfig
        from pluralign.reward_models.npbtl.trainer import train_npbtl

        config = NPBTLConfig(output_dir=str(rm_dir), dataset=str(data), skip_invalid_pairs=True, seed=seed,
                             embedding_cache=str(rm_dir.parent / "rm_features"), embedding_pooling=pooling)  # fmt: skip
        return config, train_npbtl
    if kind == "classifier":
        from pluralign.reward_models.classifier.config import ClassifierRewardConfig
        from pluralign.reward_models.classifier.trainer import train_classifier

        config = ClassifierRewardConfig(
            output_dir=str(rm_dir), dataset=str(data), skip_invalid_pairs=True, objective_name=HARMLESS, seed=seed,
            report_to="none",
        )  # fmt: skip
        return config, train_classifier
    raise ConfigError(f"harmless_rm={kind!r}: use one of {', '.join(HARMLESS_RM_TYPES)}")


def harmless_reward_model(ctx: WorldContext, train_pairs: list[dict]) -> Path:
    """The ``harmless`` reward model trained on ``train_pairs`` by ``train reward-model --type
    settings.harmless_rm``'s library function with its default settings; reused when finished."""
    from pluralign.objectives.trained import EVAL_FILE

    kind = ctx.settings.harmless_rm
    rm_dir = ctx.work_dir / RM_DIR
    results = rm_dir / EVAL_FILE
    if not (results.is_file() and "pairwise_accuracy" in json.loads(results.read_text())):
        t = time.time()
        data = ctx.work_dir / RM_PAIRS
        # conversational responses with the conversational prompt: TRL's pair format keeps the prompt as given
        write_jsonl(data, [
            {"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]}
            for p in train_pairs
        ])  # fmt: skip
        config, train = _rm_config(kind, rm_dir, data, ctx.settings.seed, ctx.settings.harmless_pooling)
        ctx.log(
            f"hh world: training the {HARMLESS} reward model ({kind}) on {len(train_pairs)} pairs (cached after the first run)"
        )
        train(config, progress=lambda m: ctx.log(f"hh world: reward model: {m}"))
        ctx.seconds["reward_model"] = round(time.time() - t, 1)
    held = json.loads(results.read_text())
    ctx.log(
        f"hh world: {HARMLESS} reward model ({kind}) {rm_dir}: held-out pairwise accuracy "
        f"{held.get('pairwise_accuracy', float('nan')):.3f} on {held.get('pairs', 0)} pairs (95% CI {held.get('ci95')})"
    )
    return rm_dir


HELPFUL_SCORERS = ("relevance", "answer_relevance")


def _objectives(ctx: WorldContext) -> list[dict[str, Any]]:
    scorer = ctx.settings.helpful_scorer
    if scorer not in HELPFUL_SCORERS:
        raise ConfigError(f"helpful_scorer={scorer!r}: use one of {', '.join(HELPFUL_SCORERS)}")
    train_pairs, _ = split_hh_pairs(ctx)
    rm = harmless_reward_model(ctx, train_pairs)
    return [
        {"name": HARMLESS, "type": "reward_model", "model": str(rm)},
        {"name": HELPFUL, "type": "builtin", "scorer": scorer},
    ]


def held_out_prompts(train_pairs: list[dict], held_pairs: list[dict], n: int, seed: int) -> tuple[list[str], int]:
    """Up to ``n`` first user turns of held-out pairs that no training pair holds as any of its user turns
    (a pair id split can put one request on both sides); returns them and how many were excluded so."""
    seen = {u for p in train_pairs for u in user_turns(p["prompt"])}
    firsts = list(dict.fromkeys(user_turns(p["prompt"])[0] for p in held_pairs))
    fresh = [u for u in firsts if u not in seen]
    random.Random(seed).shuffle(fresh)
    return fresh[:n], len(firsts) - len(fresh)


def ric_pairs(train_pairs: list[dict], n: int, max_user_turns: int, seed: int) -> list[dict]:
    """``n`` training pairs (shuffled with ``seed``) whose dialogue has at most ``max_user_turns`` user turns."""
    pool = [p for p in train_pairs if len(user_turns(p["prompt"])) <= max_user_turns]
    random.Random(seed).shuffle(pool)
    return pool[:n]


def _build(ctx: WorldContext, objectives: ObjectiveSet) -> WorldData:
    s = ctx.settings
    train_pairs, held_pairs = split_hh_pairs(ctx)
    eval_users, excluded = held_out_prompts(train_pairs, held_pairs, s.n_eval_prompts, s.seed)
    if not eval_users:
        raise DataError("the held-out pairs leave no evaluation prompt; raise --held_out_fraction or give more pairs")
    pairs = ric_pairs(train_pairs, s.n_prompts, s.max_user_turns, s.seed)
    if not pairs:
        raise DataError(f"no training pair has at most {s.max_user_turns} user turn(s); raise max_user_turns")
    train = []
    for k, p in enumerate(pairs):
        for source in ("chosen", "rejected"):  # the paper's offline data: both responses, each its own sample
            train.append({"prompt": p["prompt"], "response": p[source], "source": source, "pair": k})
    if s.base_samples_per_prompt > 0:
        rng = random.Random(s.seed)
        plan = [
            {"i": len(pairs) * j + k, "pair": k, "temperature": TEMPERATURES[rng.randrange(len(TEMPERATURES))]}
            for j in range(s.base_samples_per_prompt)
            for k in range(len(pairs))
        ]
        done = sample_base(ctx, plan, lambda row: render_prompt(ctx.tokenizer, pairs[row["pair"]]["prompt"]))
        for row in plan:
            text = response_text(done[row["i"]]["response"])
            if text:
                train.append(
                    {"prompt": pairs[row["pair"]]["prompt"], "response": text, "source": "base", "pair": row["pair"]}
                )
    ctx.data["ric_pairs"], ctx.data["excluded_eval_prompts"] = len(pairs), excluded
    ctx.log(
        f"hh world: {len(train_pairs)} training / {len(held_pairs)} held-out pairs; RiC's offline data: {len(train)} "
        f"samples from {len(pairs)} pairs; {len(eval_users)} held-out prompts ({excluded} held-out requests "
        "left out: a training pair holds them too)"
    )
    return WorldData(train, [[{"role": "user", "content": u}] for u in eval_users])


def _describe(ctx: WorldContext, objectives: ObjectiveSet, train: list[dict]) -> dict[str, Any]:
    from pluralign.objectives.trained import EVAL_FILE, pairwise_accuracy

    names = objectives.names
    train_pairs, held_pairs = split_hh_pairs(ctx)
    t = time.time()
    # the reward model on every held-out pair of the world (unseen by it and by RiC), scored through the cache
    harmless = ObjectiveSet([objectives[HARMLESS]])
    cache = ScoreCache(ctx.work_dir / "score_cache.sqlite")

    def score(prompts: list[Any], responses: list[Any]) -> list[float]:
        rows = [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]
        return score_samples(rows, harmless, cache)[HARMLESS]

    world_held = pairwise_accuracy(score, held_pairs)
    ctx.seconds["reward_model_eval"] = round(time.time() - t, 1)
    own = json.loads((Path(objectives[HARMLESS].model_dir) / EVAL_FILE).read_text())
    ctx.log(
        f"hh world: {HARMLESS} reward model on the world's {world_held['pairs']} held-out pairs: pairwise accuracy "
        f"{world_held['pairwise_accuracy']:.3f} (95% CI {world_held['ci95']})"
    )
    by_source = {}
    for source in ("chosen", "rejected", "base"):
        rows = [r for r in train if r["source"] == source]
        if rows:
            by_source[source] = {"n": len(rows), **{n: float(np.mean([r[f"score_{n}"] for r in rows])) for n in names}}
    detail = {
        source: objective_correlation([r[f"score_{names[0]}"] for r in train if r["source"] == source],
                                      [r[f"score_{names[1]}"] for r in train if r["source"] == source])
        for source in by_source
    }  # fmt: skip
    # per objective: the share of RiC's pairs whose human-chosen response scores higher (harmless: in-sample)
    paired = {}
    for r in train:
        if r["source"] in ("chosen", "rejected"):
            paired.setdefault(r["pair"], {})[r["source"]] = r
    prefers = {
        n: float(np.mean([p["chosen"][f"score_{n}"] > p["rejected"][f"score_{n}"] for p in paired.values()]))
        for n in names
    }
    ctx.log(
        "hh world: mean score of the chosen / rejected responses: "
        + "; ".join(f"{n} {by_source['chosen'][n]:+.3f} / {by_source['rejected'][n]:+.3f}" for n in names)
        + "; share of pairs whose chosen response scores higher: "
        + ", ".join(f"{n} {prefers[n]:.2f}" for n in names)
    )
    return {
        "reward_model": {
            "dir": str(objectives[HARMLESS].model_dir),
            "held_out": {k: own.get(k) for k in ("pairwise_accuracy", "ci95", "pairs", "train_pairs", "stage_seconds")},
            "world_held_out": world_held,
        },
        "split": {
            "train_pairs": len(train_pairs),
            "held_out_pairs": len(held_pairs),
            "ric_pairs": ctx.data.get("ric_pairs"),
            "excluded_eval_prompts": ctx.data.get("excluded_eval_prompts"),
        },
        "by_source": by_source,
        "chosen_scores_higher": prefers,
        "correlation_detail": detail,
    }


def _dpo_pairs(world: ChatWorld, tokenizer: Any) -> dict[str, list[dict[str, str]]]:
    """The human harmless pairs of RiC's offline data (chat-rendered prompts): DPO's single-objective answer."""
    paired: dict[int, dict[str, Any]] = {}
    for r in world.train:
        if r.get("source") in ("chosen", "rejected"):
            paired.setdefault(r["pair"], {"prompt": render_prompt(tokenizer, r["prompt"])})[r["source"]] = r["response"]
    pairs = [p for _, p in sorted(paired.items()) if "chosen" in p and "rejected" in p]
    # no helpful pairs: the model (one for every preference) names both objectives, so the front's
    # preferences reach it; its manifest records 0 pairs for helpful
    return {HARMLESS: pairs[: world.settings.dpo_pairs], HELPFUL: []}


HH = WorldSpec(
    name="hh",
    objectives=_objectives,
    build=_build,
    describe=_describe,
    dpo_pairs=_dpo_pairs,
    world_fields=("n_prompts", "n_eval_prompts", "max_new_tokens", "seed", "base_model", "pairs", "held_out_fraction",
                  "max_user_turns", "base_samples_per_prompt", "harmless_rm", "harmless_pooling",
                  "helpful_scorer"),  # fmt: skip
    methods=("ric", "dpo", "soups", "moslim"),
    defaults=HH_DEFAULTS,
    base_front="base",
    range_from_data=True,
    description="harmless (a reward model trained on the HH pairs) vs helpful (MiniLM relevance, less what copies the request) on the pairs' own responses",
)

"""The chat worlds: SmolLM2-135M-Instruct steered between two real objectives on real HH prompts.

One code path builds every chat world; a :class:`WorldSpec` says what differs: the objectives, the
offline data and the prompts. Two specs ship:

- ``chat`` (this module, :data:`CHAT`): ``relevance`` (MiniLM) against ``sentiment`` (VADER) on the
  first human turns of the shipped HH-RLHF harmless pairs; the offline data is sampled from the base
  model itself, each prompt once under each sampling mode (:data:`MODES`: plain / gloomy / cheerful /
  sunny change of subject). SmolLM2-135M barely follows a system prompt, so a mode also fixes the
  response's first words (an *opening*) and the model writes the rest; the training prompt drops the
  mode's instructions: the reward tags take their place;
- ``hh`` (:mod:`pluralign.worlds.chat.hh`): ``harmless`` (a classifier reward model pluralign trains on
  the shipped pairs' training split) against ``helpful`` (MiniLM relevance); the offline data is the
  training pairs' own responses, chosen and rejected, as in the RiC paper.

:func:`build_chat_world` then scores the offline data with both objectives (cached in SQLite), measures
their correlation and writes ``world.json``. Every stage writes its result to ``work_dir`` (generations
chunk by chunk, scores, the reward model's checkpoints), so a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.jsonl import read_jsonl as _read_jsonl
from pluralign.data.pairs import pairs_by_score
from pluralign.errors import ConfigError
from pluralign.generation.prompts import assistant_marker, render
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples

BASE_MODEL = "builtin:smollm2-135m-instruct"
OBJECTIVES = ["relevance", "sentiment"]


@dataclass(frozen=True)
class SamplingMode:
    """How one base sample is drawn: an optional system prompt, words appended to the user turn, and
    openings (the response's first words, one drawn per sample; the model continues them)."""

    name: str
    system: str | None = None
    user_suffix: str = ""
    openings: tuple[str, ...] = ()

    def prompt(self, tokenizer: Any, user: str) -> str:
        """The sampling prompt (the training prompt is the plain ``render(tokenizer, user)``)."""
        return render(tokenizer, user + self.user_suffix, self.system)


# Every opening of a mode starts with the same word ("Sadly", "Great", "Oh"), which no other mode's
# opening starts with: the response's first token then tells its mode, so a tag that asks for a mode
# decides one token the model can learn from the tags (with 4-5 different first words per mode,
# greedy decoding followed no tag after 96 LoRA steps: docs/chat_world.md).
MODES: tuple[SamplingMode, ...] = (
    SamplingMode("plain"),
    SamplingMode("gloomy", openings=("Sadly,", "Sadly, this is awful.", "Sadly, the bad news is that", "Sadly, I hate to say it, but")),
    SamplingMode("cheerful", openings=("Great question!", "Great news:", "Great, happy to help!", "Great, I'd love to help!")),
    SamplingMode(
        "sunny",
        user_suffix="\n\n(Do not answer this. Instead, write happily about a lovely sunny day.)",
        openings=("Oh, what a lovely day!", "Oh, I love sunny mornings!", "Oh, let's talk about something wonderful:", "Oh, how happy I am!"),
    ),
)
TEMPERATURES = (0.7, 1.0)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
Progress = Callable[[str], None]


@dataclass
class ChatSettings:
    """Sizes of a chat world and of the training on it. The defaults are the ``chat`` world's, chosen so
    its RiC demo runs in under 20 minutes on 2 CPU cores; a :class:`WorldSpec` overrides some (``defaults``)."""

    n_prompts: int = 96  # chat: training prompts; hh: training pairs (two samples each)
    responses_per_prompt: int = 4  # chat: one per sampling mode: the same prompt, four tags, four styles
    n_eval_prompts: int = 24
    max_new_tokens: int = 32
    generation_batch_size: int = 16
    grid_points: int = 4  # K=2 grid: weights 0, 0.25, 0.5, 0.75, 1
    seed: int = 0
    base_model: str = BASE_MODEL
    # hh: where the pairs come from and which of them train RiC
    pairs: str | None = None  # preference pairs file (prompt/chosen/rejected); None: the shipped HH pairs
    held_out_fraction: float = 0.2  # pairs (by pair id) kept from the reward model and RiC: evaluation prompts
    max_user_turns: int = 1  # RiC's pairs: dialogues with at most this many user turns
    base_samples_per_prompt: int = 0  # hh: the base model's own samples added to the offline data
    harmless_rm: str = "btl"  # hh: the harmless reward model's type (btl | npbtl | classifier)
    # hh: what btl / npbtl features average: mean (the whole dialogue) or response (the response's tokens,
    # each still reading the request; pluralign.models.embeddings)
    harmless_pooling: str = "mean"
    # hh: the helpful objective's built-in scorer: relevance (MiniLM cosine of request and response) or
    # answer_relevance (the same, discounted by the share of the response that copies the request)
    helpful_scorer: str = "relevance"
    # RiC
    lora_r: int = 16
    lora_alpha: int = 32
    # LoRA on all 30 layers at lr 3e-3: it learned to read the tags faster than LoRA on layers 15..29 at
    # 1e-3, which is ~25% cheaper a step (docs/chat_world.md)
    learning_rate: float = 3e-3
    offline_epochs: float = 2.0
    offline_max_steps: int = -1  # > 0 overrides offline_epochs
    max_length: int = 192  # tokens per training sequence (the oldest prompt tokens go first)
    # tags show each reward's quantile level 0..4 (hh: 0..9, HH_DEFAULTS) among the base samples (no signs,
    # every value equally common) on their own line at the start of the assistant's turn, right before the
    # response's first token. The place is what lets 96 LoRA steps steer (the same levels before the assistant header:
    # 1.00 / 0.70, range 0.19 / 0.40); the levels gave 1.00 / 1.00, z-scores there 0.90 / 0.90
    # (benchmarks/chat_tags.py, docs/chat_world.md)
    tag_format: str = "<{name}> {value}"
    tag_levels: int = 5
    tag_position: str = "response_start"
    # RiC's tags from raw rewards (none, the paper) or minus each prompt's mean over its offline responses
    # (prompt; pluralign.methods.ric.centering)
    center_rewards: str = "none"
    # classifier-free guidance on the tags when RiC generates (1: plain decoding; the hh world's default in
    # hh.py; docs/hh_world.md "Guidance on the tags")
    guidance_scale: float = 1.0
    # the tags guidance steers away from (pluralign.preferences.tags.GUIDANCE_NEGATIVES): opposite, or
    # raised, which pushes no objective down (docs/hh_world.md "The refusing end")
    guidance_against: str = "opposite"
    # objectives RiC never asks for less than the middle of their bounds (RiCConfig.floor_at_middle); none by
    # default: on the hh world flooring helpful mends two seeds' refusing ends and breaks two others' steering
    # (docs/hh_world.md "The refusing end")
    floor_at_middle: tuple[str, ...] = ()
    # bfloat16 matmuls for RiC's LoRA training and every generation of the demo (pluralign.generation.precision):
    # on a CPU with native bfloat16 LoRA steps 1.25x and generation 1.5-2x faster; off for the chat world,
    # on for hh since stop 44, where it pays for the second online iteration (docs/hh_world.md)
    bf16: bool = False
    batch_size: int = 8
    online_iterations: int = 1
    online_prompts: int = 64
    online_offline_samples: int = 64
    online_learning_rate: float = 5e-4
    online_max_steps: int = -1  # > 0 overrides one epoch over the buffer
    # DPO baseline
    dpo_pairs: int = 64  # chat: per objective; hh: human pairs
    dpo_learning_rate: float = 5e-4
    dpo_beta: float = 0.1
    # RL with LoRA: Rewarded Soups (one RLOO run per objective) and MOSLIM (one RLOO run) spend the same
    # budget per run: rl_steps steps of rl_batch_size completions, rl_generations per prompt
    rl_steps: int = 12
    rl_batch_size: int = 16  # completions per step
    rl_generations: int = 4  # completions per prompt (RLOO's leave-one-out baseline)
    rl_learning_rate: float = 5e-4
    rl_beta: float = 0.05  # KL penalty to the base model (TRL's RLOO default)
    # MOSLIM: a multi-head reward model (MiniLM, one head per objective, train reward-model --type
    # multihead's defaults) on the offline data's scores binned into moslim_classes quantile classes, then
    # RLOO on prompts that state the wanted levels
    moslim_classes: int = 3
    moslim_preferences_per_prompt: int = 2  # training rows per prompt, each with its own sampled levels

    def precision(self) -> str:
        """``bf16`` or ``fp32``, as ``bf16`` says."""
        return "bf16" if self.bf16 else "fp32"


@dataclass
class WorldContext:
    """What a spec's steps get: the folder, the settings, the base model (resolved) and its tokenizer."""

    work_dir: Path
    settings: ChatSettings
    base_path: str
    tokenizer: Any
    progress: Progress | None
    world: str = "chat"
    seconds: dict[str, float] = field(default_factory=dict)  # this run's wall seconds per build stage
    data: dict[str, Any] = field(default_factory=dict)  # what a spec computes once per run (e.g. its pair split)

    def log(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)


@dataclass
class WorldData:
    """A spec's offline data: samples ``{"prompt", "response", ...labels}`` and the evaluation prompts."""

    train: list[dict[str, Any]]
    eval_prompts: list[Any]


@dataclass(frozen=True)
class WorldSpec:
    """What makes one chat world: its objectives, offline data and prompts (the rest is shared).

    ``objectives(ctx)`` returns objective specs (it may train what they need, cached in ``ctx.work_dir``);
    ``build(ctx, objectives)`` returns the offline data and the held-out evaluation prompts;
    ``describe(ctx, objectives, train)`` adds facts about the scored data to ``world.json``;
    ``dpo_pairs(world, tokenizer)`` is the DPO baseline's data, per dimension.
    """

    name: str
    objectives: Callable[[WorldContext], list[Any]]
    build: Callable[[WorldContext, ObjectiveSet], WorldData]
    describe: Callable[[WorldContext, ObjectiveSet, list[dict]], dict[str, Any]]
    dpo_pairs: Callable[[Any, Any], dict[str, list[dict[str, str]]]]
    world_fields: tuple[str, ...]  # the settings a built world depends on (the rest only shape the training)
    methods: tuple[str, ...] = ("ric", "dpo", "soups", "moslim")
    defaults: Mapping[str, Any] = field(default_factory=dict)
    base_front: str = "sft"  # the base model's front in front.json
    range_from_data: bool = False  # range in units of the offline data's spread (else the base model's outputs)
    description: str = ""

    def settings(self, **overrides: Any) -> ChatSettings:
        """This world's settings: ChatSettings, then the spec's defaults, then ``overrides``."""
        return ChatSettings(**{**self.defaults, **overrides})


@dataclass
class ChatWorld:
    work_dir: Path
    base_model: str
    objectives: ObjectiveSet
    train: list[dict[str, Any]]
    eval_prompts: list[Any]
    correlation: float
    response_marker: str
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    settings: ChatSettings = field(default_factory=ChatSettings)
    spec: WorldSpec | None = None
    info: dict[str, Any] = field(default_factory=dict)  # world.json's facts (correlation detail, reward model...)
    build_seconds: dict[str, float] = field(default_factory=dict)  # this run's seconds per build stage

    def pairs(self, objective: str, max_pairs: int | None = None, min_margin: float = 1e-6) -> list[dict[str, str]]:
        """Pairs of base-model responses to the same prompt; ``chosen`` scores higher on ``objective``."""
        return pairs_by_score(self.train, objective, self.settings.seed, max_pairs, min_margin)


def hh_user_turns() -> list[str]:
    """The first human turn of each shipped HH-RLHF pair, deduplicated, in file order."""
    from pluralign.worlds.chat.assets import hh_harmless_pairs

    seen: dict[str, None] = {}
    for line in hh_harmless_pairs().read_text().splitlines():
        m = re.match(r"\s*Human:(.*?)(?:\n\nAssistant:|$)", json.loads(line)["prompt"], re.S)
        if m and m.group(1).strip():
            seen.setdefault(m.group(1).strip(), None)
    return list(seen)


def build_chat_world(
    work_dir: str | Path,
    progress: Progress | None = print,
    settings: ChatSettings | None = None,
    spec: WorldSpec | None = None,
) -> ChatWorld:
    """Build (or resume / load from ``work_dir``) a chat world: objectives, offline data, scores.

    ``spec`` says which world (default: :data:`CHAT`, relevance against sentiment)."""
    from pluralign.models.builtin import resolve_model
    from pluralign.models.loading import load_tokenizer

    spec = spec or CHAT
    settings = settings or spec.settings()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    world_file = work_dir / "world.json"
    # a folder is reused only with the settings it was started with, before anything in it is reused
    settings_file = work_dir / "world_settings.json"
    for saved_in in (world_file, settings_file):
        if saved_in.is_file():
            saved = json.loads(saved_in.read_text())
            check_world_name(saved.get("world"), spec, saved_in)
            check_world_settings(saved.get("settings", {}), settings, saved_in, spec)
    settings_file.write_text(json.dumps({"world": spec.name, "settings": asdict(settings)}, indent=1))

    t = time.time()
    base = resolve_model(settings.base_model)  # converts the GGUF once
    tokenizer = load_tokenizer(base)
    ctx = WorldContext(work_dir, settings, base, tokenizer, progress, spec.name)
    ctx.seconds["base_model"] = round(time.time() - t, 1)
    ctx.log(f"{spec.name} world: base model {settings.base_model} ready ({base}) in {time.time() - t:.1f}s")
    marker = assistant_marker(tokenizer)
    objectives = ObjectiveSet.from_specs(spec.objectives(ctx))
    gen = {"max_new_tokens": settings.max_new_tokens, "do_sample": False}

    def world(data: dict[str, Any]) -> ChatWorld:
        info = {k: v for k, v in data.items() if k not in ("train", "eval_prompts", "settings")}
        return ChatWorld(
            work_dir, settings.base_model, objectives, data["train"], data["eval_prompts"], data["correlation"],
            marker, gen, settings, spec, info, dict(ctx.seconds),
        )  # fmt: skip

    if world_file.is_file():
        data = json.loads(world_file.read_text())
        objectives.fit_stats({n: [s[f"score_{n}"] for s in data["train"]] for n in objectives.names})
        return world(data)

    built = spec.build(ctx, objectives)
    t = time.time()
    train = built.train
    scores = score_samples(train, objectives, ScoreCache(work_dir / "score_cache.sqlite"))
    for n in objectives.names:
        for s, v in zip(train, scores[n]):
            s[f"score_{n}"] = float(v)
    objectives.fit_stats(scores)
    a, b = objectives.names[:2]
    corr_all = objective_correlation(scores[a], scores[b])
    ctx.seconds["score"] = round(time.time() - t, 1)
    ctx.log(
        f"{spec.name} world: scored {len(train)} samples in {time.time() - t:.1f}s; {a} vs {b} correlation "
        f"{corr_all['pearson']:+.3f} (Spearman {corr_all['spearman']:+.3f})"
    )
    facts = spec.describe(ctx, objectives, train)
    data = {
        "world": spec.name,
        "base_model": settings.base_model,
        "objectives": objectives.names,
        "correlation": corr_all["pearson"],
        **facts,
        "correlation_detail": {"all": corr_all, **facts.get("correlation_detail", {})},
        "train": train,
        "eval_prompts": built.eval_prompts,
        "settings": asdict(settings),
        "build_seconds": dict(ctx.seconds),
    }
    world_file.write_text(json.dumps(data, indent=1))
    return world(data)


# the settings the chat world depends on (the rest only shape the training on it)
WORLD_FIELDS = ("n_prompts", "responses_per_prompt", "n_eval_prompts", "max_new_tokens", "seed")
# world fields added later: the value a folder saved before the field existed was built with
SAVED_BEFORE: dict[str, Any] = {"harmless_pooling": "mean", "helpful_scorer": "relevance"}


def check_world_settings(
    saved: dict[str, Any], settings: ChatSettings, world_file: Path, spec: WorldSpec | None = None
) -> None:
    """A cached world is reused only for the settings it was built with: else a one-line error, never
    a silent reuse (a different seed must not quietly give the old world's samples)."""
    for name in spec.world_fields if spec else WORLD_FIELDS:
        if name not in saved and name not in SAVED_BEFORE:
            continue
        was = saved.get(name, SAVED_BEFORE.get(name))
        if was != getattr(settings, name):
            raise ConfigError(
                f"{world_file} was built with {name}={was!r}, not {getattr(settings, name)!r}; "
                "use another --out (or --work_dir) for a new world, or the same settings to reuse it"
            )


def check_world_name(saved_world: str | None, spec: WorldSpec, path: Path) -> None:
    """One folder holds one world: the chat world's folder is not reused for the hh world."""
    if saved_world and saved_world != spec.name:
        raise ConfigError(f"{path} holds the {saved_world!r} world, not {spec.name!r}; use another --out (or --work_dir)")


def sample_base(
    ctx: WorldContext,
    plan: list[dict[str, Any]],
    sampling_prompt: Callable[[dict[str, Any]], str],
    finish: Callable[[dict[str, Any], str], str] = lambda row, text: text,
    file_name: str = "base_samples.jsonl",
) -> dict[int, dict[str, Any]]:
    """The base model's samples for ``plan`` (rows with ``i`` and ``temperature``), chunk by chunk into
    ``work_dir/file_name`` (a rerun samples only what is missing); ``finish(row, text)`` is the response."""
    import torch

    from pluralign.generation.batched import generate_batched
    from pluralign.models.loading import load_causal_lm

    s = ctx.settings
    samples_file = ctx.work_dir / file_name
    done = {r["i"]: r for r in _read_jsonl(samples_file)}
    todo = [p for p in plan if p["i"] not in done]
    if not todo:
        return done
    t = time.time()
    lm = load_causal_lm(ctx.base_path)
    chunk = s.generation_batch_size * 4
    for temp in sorted({p["temperature"] for p in todo}):
        rows = [p for p in todo if p["temperature"] == temp]
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            torch.manual_seed(s.seed + part[0]["i"])
            texts = generate_batched(
                lm,
                ctx.tokenizer,
                [sampling_prompt(p) for p in part],
                batch_size=s.generation_batch_size,
                max_new_tokens=s.max_new_tokens,
                do_sample=True,
                temperature=temp,
                top_p=0.95,
            )
            texts = [finish(p, t) for p, t in zip(part, texts)]
            with samples_file.open("a") as f:
                f.write("".join(json.dumps({**p, "response": r}) + "\n" for p, r in zip(part, texts)))
            done.update({p["i"]: {**p, "response": r} for p, r in zip(part, texts)})
            ctx.log(f"{ctx.world} world: sampled {len(done)}/{len(plan)} base responses ({time.time() - t:.0f}s)")
    del lm
    ctx.seconds["base_samples"] = round(ctx.seconds.get("base_samples", 0.0) + time.time() - t, 1)
    return done


# ---------------------------------------------------------------------------------------------------
# the chat world: relevance against sentiment on base-model samples drawn under sampling modes


def _chat_build(ctx: WorldContext, objectives: ObjectiveSet) -> WorldData:
    s = ctx.settings
    users = hh_user_turns()
    rng = random.Random(s.seed)
    rng.shuffle(users)
    train_users = users[: s.n_prompts]
    eval_users = users[s.n_prompts : s.n_prompts + s.n_eval_prompts]
    plan = sampling_plan(train_users, s.responses_per_prompt, rng)
    done = sample_base(
        ctx,
        plan,
        lambda p: _MODES[p["mode"]].prompt(ctx.tokenizer, p["user"]) + p["opening"],
        lambda p, text: join_opening(p["opening"], text),
    )
    # the training prompt is the plain chat prompt without the mode's instructions
    train = [
        {"prompt": render(ctx.tokenizer, done[p["i"]]["user"]), "response": done[p["i"]]["response"], "mode": p["mode"]}
        for p in plan
    ]
    return WorldData(train, [render(ctx.tokenizer, u) for u in eval_users])


def _chat_describe(ctx: WorldContext, objectives: ObjectiveSet, train: list[dict]) -> dict[str, Any]:
    a, b = objectives.names[:2]
    plain = [r for r in train if r["mode"] == "plain"]
    corr_plain = objective_correlation([r[f"score_{a}"] for r in plain], [r[f"score_{b}"] for r in plain])
    per_mode = _by_mode(train, objectives.names)
    ctx.log(f"chat world: plain samples only: correlation {corr_plain['pearson']:+.3f}; mean per mode: " + "; ".join(
        f"{m['mode']} " + " / ".join(f"{m[n]:.2f}" for n in objectives.names) for m in per_mode
    ))  # fmt: skip
    return {"per_mode": per_mode, "correlation_detail": {"plain_mode": corr_plain}}


def _chat_dpo_pairs(world: ChatWorld, tokenizer: Any) -> dict[str, list[dict[str, str]]]:
    """Both objectives' pairs of base samples merged: one model for every preference."""
    return {name: world.pairs(name, world.settings.dpo_pairs) for name in world.objectives.names}


CHAT = WorldSpec(
    name="chat",
    objectives=lambda ctx: list(OBJECTIVES),
    build=_chat_build,
    describe=_chat_describe,
    dpo_pairs=_chat_dpo_pairs,
    world_fields=WORLD_FIELDS + ("base_model",),
    description="relevance vs sentiment on SmolLM2's own samples of HH prompts",
)

_MODES = {m.name: m for m in MODES}


def sampling_plan(users: list[str], responses_per_prompt: int, rng: random.Random) -> list[dict[str, Any]]:
    """One row per base sample to draw: prompt ``i`` takes modes i, i+1, ... (all of them when
    ``responses_per_prompt == len(MODES)``: the same prompt under every tag), an opening of its mode
    and a temperature."""
    plan: list[dict[str, Any]] = []
    for i, u in enumerate(users):
        for k in range(responses_per_prompt):
            mode = MODES[(i + k) % len(MODES)]
            plan.append(
                {
                    "i": len(plan),
                    "user": u,
                    "mode": mode.name,
                    "opening": rng.choice(mode.openings) if mode.openings else "",
                    "temperature": TEMPERATURES[rng.randrange(len(TEMPERATURES))],
                }
            )
    return plan


def join_opening(opening: str, continuation: str) -> str:
    """A sampled response: the mode's opening words followed by what the model wrote after them."""
    if not opening:
        return continuation
    if not continuation or continuation[:1].isspace() or continuation[:1] in ".,;:!?'":
        return opening + continuation
    return f"{opening} {continuation}"


def objective_correlation(a: list[float], b: list[float]) -> dict[str, float]:
    """Pearson and Spearman correlation of two objectives' scores on the same samples (below zero:
    they conflict), with the two-sided p-value of Spearman's; NaN where either score is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "spearman_p": float("nan"), "n": int(x.size)}
    rho = spearmanr(x, y)
    return {
        "pearson": float(np.corrcoef(x, y)[0, 1]),
        "spearman": float(rho.statistic),
        "spearman_p": float(rho.pvalue),
        "n": int(x.size),
    }


def _by_mode(train: list[dict], names: list[str]) -> list[dict]:
    """Mean scores of the base samples per sampling mode (how the sampling spreads the objectives)."""
    out = []
    for mode in MODES:
        rows = [s for s in train if s["mode"] == mode.name]
        if rows:
            out.append(
                {"mode": mode.name, "n": len(rows), **{n: float(np.mean([s[f"score_{n}"] for s in rows])) for n in names}}
            )
    return out

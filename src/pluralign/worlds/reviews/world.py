"""The demo world: corpus, objectives with fitted statistics, the pretrained tiny model, pairs.

``build_world(work_dir)`` builds everything once and caches it in ``work_dir``; every method's demo
hook starts from the same :class:`DemoWorld`, so fronts are comparable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pluralign.data.pairs import pairs_by_score
from pluralign.errors import ConfigError
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples
from pluralign.worlds.reviews.corpus import eval_prompts, generate_corpus

OBJECTIVES = ["sentiment", "conciseness"]
GENERATION = {"max_new_tokens": 48, "do_sample": True, "top_p": 0.9, "temperature": 0.7}


@dataclass
class WorldSettings:
    n_prompts: int = 1000
    responses_per_prompt: int = 4
    n_eval_prompts: int = 64
    pretrain_epochs: float = 3.0
    pretrain_learning_rate: float = 3e-3
    batch_size: int = 32
    n_layer: int = 3
    n_embd: int = 96
    seed: int = 0


@dataclass
class DemoWorld:
    work_dir: Path
    base_model: str
    objectives: ObjectiveSet
    train: list[dict[str, Any]]
    eval_prompts: list[str]
    generation_kwargs: dict[str, Any] = field(default_factory=lambda: dict(GENERATION))
    settings: WorldSettings = field(default_factory=WorldSettings)

    def pairs(self, objective: str, max_pairs: int | None = None, min_margin: float = 1e-6) -> list[dict[str, str]]:
        """Pairs of responses to the same prompt; ``chosen`` scores higher on ``objective``."""
        if self.train and f"score_{objective}" not in self.train[0]:
            raise KeyError(f"unknown objective {objective!r}; the demo world has {self.objectives.names}")
        return pairs_by_score(self.train, objective, self.settings.seed, max_pairs, min_margin)


def _log(progress: Callable[[str], None] | None, msg: str) -> None:
    if progress:
        progress(msg)


def build_world(
    work_dir: str | Path, progress: Callable[[str], None] | None = print, settings: WorldSettings | None = None
) -> DemoWorld:
    """Build (or load from ``work_dir``) the demo world and its pretrained tiny model."""
    settings = settings or WorldSettings()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data_file = work_dir / "world.json"
    objectives = ObjectiveSet.from_specs(OBJECTIVES)
    if data_file.is_file():
        data = json.loads(data_file.read_text())
        train = data["train"]
        if data.get("seed", 0) != settings.seed:
            raise ConfigError(
                f"{work_dir} holds the demo world of seed {data.get('seed', 0)}, not {settings.seed}; "
                "pass another --work_dir (or --out) or that --seed"
            )
    else:
        t = time.time()
        corpus = generate_corpus(settings.n_prompts, settings.responses_per_prompt, seed=settings.seed)
        scores = score_samples(corpus, objectives, ScoreCache(work_dir / "score_cache.sqlite"))
        train = [{**s, **{f"score_{n}": scores[n][i] for n in objectives.names}} for i, s in enumerate(corpus)]
        data = {"train": train, "eval_prompts": eval_prompts(settings.n_eval_prompts), "seed": settings.seed}
        data_file.write_text(json.dumps(data))
        _log(progress, f"world: {len(train)} samples scored with {objectives.names} in {time.time() - t:.1f}s")
    objectives.fit_stats({n: [s[f"score_{n}"] for s in train] for n in objectives.names})
    objectives.save(work_dir / "objectives.json")
    base = work_dir / "sft_model"
    if not (base / "final" / "config.json").is_file():
        _pretrain(train, base, settings, progress)
    return DemoWorld(
        work_dir=work_dir,
        base_model=str(base / "final"),
        objectives=objectives,
        train=train,
        eval_prompts=data["eval_prompts"],
        settings=settings,
    )


def _pretrain(train: list[dict], base: Path, settings: WorldSettings, progress) -> None:
    from trl import SFTConfig

    from pluralign.training.args import precision_for_device
    from pluralign.training.sft import run_sft
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, tokenizer_texts, train_tokenizer

    t = time.time()
    init = base / "init"
    tok = train_tokenizer(tokenizer_texts(train, extra=[f"<{n}>" for n in OBJECTIVES]), init)
    build_tiny_gpt(init, tok, n_layer=settings.n_layer, n_embd=settings.n_embd, seed=settings.seed)
    args = SFTConfig(
        output_dir=str(base),
        num_train_epochs=settings.pretrain_epochs,
        learning_rate=settings.pretrain_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=20,
        per_device_train_batch_size=settings.batch_size,
        logging_steps=50,
        save_steps=200,
        save_total_limit=1,
        report_to="none",
        seed=settings.seed,
        max_length=160,
        disable_tqdm=True,
        gradient_checkpointing=False,  # TRL turns it on by default; a tiny model on CPU only pays for it
        **precision_for_device({}),
    )
    samples = [{"prompt": s["prompt"], "completion": s["response"]} for s in train]
    run_sft(str(init), samples, args, base, tokenizer=tok)
    _log(progress, f"world: tiny GPT-2 pretrained from scratch in {time.time() - t:.1f}s")

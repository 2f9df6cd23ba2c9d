"""MOSLIM on the demo world: a multi-head RM on the world's scores (3 quantile classes), then GRPO.

The reward model is a small BERT trained from scratch (MiniLM's tokenizer, 2 layers of width 64) on the
responses: both demo objectives depend on the response alone, and a from-scratch model of that size
trains in well under a minute on 2 CPU cores where MiniLM would need several (docs/moslim.md).
Its training rows include degenerate responses (empty, cut off, one word repeated) scored by the world's
own objectives: RL samples such text, and a reward model that never saw it rates it arbitrarily (the
policy then learns to answer an empty string, which the untrained head called "awful").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralign.data.degenerate import degenerate_responses
from pluralign.methods.moslim.config import MoslimArguments, config_class
from pluralign.methods.moslim.trainer import train_moslim
from pluralign.reward_models.multihead.config import MultiHeadRewardConfig
from pluralign.reward_models.multihead.trainer import METRICS_FILE, train_multihead
from pluralign.worlds.reviews.world import DemoWorld

DEMO_BACKBONE = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 128,
}
DEMO_CLASSES = 3
# The tiny base model was pretrained on reviews only: it knows these words, not what "2/2" means, so the
# preference block reads " [sentiment=great conciseness=short]" (MOSLIM assumes a policy that can read it).
DEMO_LEVEL_NAMES = {"sentiment": ["awful", "fine", "great"], "conciseness": ["long", "medium", "short"]}


def demo_reward_config(world: DemoWorld, output_dir: Path) -> MultiHeadRewardConfig:
    return MultiHeadRewardConfig(
        output_dir=str(output_dir),
        objective=list(world.objectives.names),
        num_classes=[DEMO_CLASSES],
        binning="quantile",
        from_scratch=True,
        backbone_config_overrides=json.dumps(DEMO_BACKBONE),
        input_format="response",
        max_length=96,
        num_train_epochs=3.0,
        learning_rate=2e-3,
        warmup_steps=20,
        lr_scheduler_type="cosine",
        per_device_train_batch_size=32,
        eval_fraction=0.1,
        logging_steps=50,
        disable_tqdm=True,
        use_cpu=True,
        seed=world.settings.seed,
    )


def demo_rl_config(
    world: DemoWorld, output_dir: Path, reward_model: Path, algorithm: str = "grpo", **overrides: Any
) -> MoslimArguments:
    """GRPO settings that fit the demo's time budget; ``algorithm`` swaps in RLOO or online DPO."""
    settings = dict(
        output_dir=str(output_dir),
        model_name_or_path=world.base_model,
        reward_model=str(reward_model),
        preferences_per_prompt=40,
        unspecified_probability=0.1,
        response_marker=None,
        level_names=json.dumps(DEMO_LEVEL_NAMES),
        target_sampling="preference",
        stats="head",
        max_steps=100,
        per_device_train_batch_size=64,
        num_generations=8,
        max_completion_length=world.generation_kwargs["max_new_tokens"],
        temperature=1.0,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        beta=0.1,  # the KL to the base model keeps the text fluent (beta=0 degenerated into "said said said")
        gradient_checkpointing=False,  # checkpointing turns the KV cache off: generation gets ~3x slower
        logging_steps=10,
        disable_tqdm=True,
        use_cpu=True,
        seed=world.settings.seed,
    )
    if algorithm == "online_dpo":  # two samples per prompt, its own name for the completion length
        settings["max_new_tokens"] = settings.pop("max_completion_length")
        settings.pop("num_generations")
    settings.update(overrides)
    return config_class(algorithm)(**settings)


def degenerate_rows(world: DemoWorld, fraction: float = 0.1, seed: int = 0) -> list[dict[str, Any]]:
    """Empty, cut-off and repeated-word variants of some training responses, scored by the world's objectives."""
    rows = degenerate_responses(world.train, fraction, seed)
    scores = world.objectives.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    for i, row in enumerate(rows):
        row.update({f"score_{n}": scores[n][i] for n in world.objectives.names})
    return rows


def train_on_demo(
    world: DemoWorld, output_dir: Path, progress: Callable[[str], None] | None = print, **rl_overrides: Any
) -> Path:
    """Train the multi-head RM (cached in ``output_dir/reward_model``), then MOSLIM-GRPO; returns the policy dir."""
    progress = progress or (lambda _msg: None)
    output_dir = Path(output_dir)
    rm_dir = output_dir / "reward_model"
    t = time.time()
    if not (rm_dir / METRICS_FILE).is_file():
        rows = list(world.train) + degenerate_rows(world, seed=world.settings.seed)
        metrics = train_multihead(demo_reward_config(world, rm_dir), rows=rows, progress=progress)
        progress(f"moslim: reward model trained in {time.time() - t:.1f}s")
    else:
        metrics = json.loads((rm_dir / METRICS_FILE).read_text())
    distinct = list(dict.fromkeys(s["prompt"] for s in world.train))
    config = demo_rl_config(world, output_dir, rm_dir, **rl_overrides)
    out = train_moslim(config, prompts=distinct, progress=progress)
    run = json.loads((out / "moslim_run.json").read_text())
    run["reward_model"] = metrics
    (out / "moslim_run.json").write_text(json.dumps(run, indent=2))
    return out

"""MOSLIM on a chat world (``pluralign demo --world chat|hh --method moslim``), METHODS.md §2.

1. **The multi-head reward model** (cached in ``OUT/moslim/reward_model``): the bundled all-MiniLM-L6-v2
   with one classification head per objective of the world, trained with summed cross-entropy by
   ``train reward-model --type multihead``'s library function with its defaults (the backbone frozen,
   each head fitted to convergence on the cached pooled features). Its labels are the world's *real*
   scorers' scores of the world's offline data, binned into ``moslim_classes`` quantile classes per
   objective (low / medium / high thirds by default), plus degenerate variants of some responses
   (empty, cut off, one word repeated) scored by the same scorers: RL samples such text, and a head that
   never saw it rates it arbitrarily (:mod:`pluralign.data.degenerate`). Why scores and not the HH pairs
   themselves: a pair says which of two answers is better on one objective (harmless only: the shipped
   pairs hold no helpfulness choices), not how harmless an answer is; binned scores give every objective
   its intensity classes, from the same scorers the front is measured with and RiC's tags are made of.
   On the hh world the ``harmless`` scorer is itself the reward model trained on the human pairs, so the
   harmless head learns the human choices through it.
2. **The preference stated in the prompt**: ``Preferences: harmless=high, helpful=medium.`` on its own
   line at the end of the user's turn (:func:`preference_template`; ``any`` for an objective left
   unspecified); during RL each training row gets its own levels, drawn as a preference w on the simplex
   mapped to levels exactly as inference maps a user's preference (``target_sampling="preference"``).
3. **RL**: TRL's RLOO with LoRA (r, alpha and q/k/v/o targets of the world's other LoRA runs) on the
   world's base model, the same budget per run as each Rewarded Soups run (``rl_steps`` steps of
   ``rl_batch_size`` completions, ``rl_generations`` per prompt), on the world's training prompts;
   the adapters are merged into the saved model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RM_DIR = "reward_model"
# words for a head's classes (a small instruct model reads words more easily than "2/2"); other class
# counts are shown as level/max digits
LEVEL_WORDS: dict[int, list[str]] = {
    2: ["low", "high"],
    3: ["low", "medium", "high"],
    5: ["very low", "low", "medium", "high", "very high"],
}
DEGENERATE_FRACTION = 0.1
Progress = Callable[[str], None]


def preference_template(names: Sequence[str]) -> str:
    """The preference line appended to the user's turn: ``\\n\\nPreferences: a={a}, b={b}.``"""
    return "\n\nPreferences: " + ", ".join(f"{n}={{{n}}}" for n in names) + "."


def reward_model_rows(world: Any, progress: Progress | None = None) -> list[dict[str, Any]]:
    """The multi-head reward model's data: the world's offline samples with their real scores, plus
    degenerate variants of ``DEGENERATE_FRACTION`` of them scored by the world's objectives. ``pair_id``
    groups every sample of one prompt, so the model's held-out split holds unseen prompts only."""
    from pluralign.data.degenerate import degenerate_responses
    from pluralign.data.loading import prompt_text

    names = world.objectives.names
    rows = [
        {"prompt": s["prompt"], "response": s["response"], "pair_id": prompt_text(s["prompt"]),
         **{f"score_{n}": float(s[f"score_{n}"]) for n in names}}
        for s in world.train
    ]  # fmt: skip
    extra = degenerate_responses(world.train, DEGENERATE_FRACTION, world.settings.seed, prefix="")
    if extra:
        scores = world.objectives.score([r["prompt"] for r in extra], [r["response"] for r in extra])
        for i, r in enumerate(extra):
            r["pair_id"] = prompt_text(r["prompt"])
            r.update({f"score_{n}": float(scores[n][i]) for n in names})
        if progress:
            progress(f"moslim: {len(extra)} degenerate responses (empty, cut, repeated) scored by the world's objectives")
    return rows + extra


def reward_model_config(world: Any, output_dir: Path):
    """The multi-head reward model on a chat world: ``train reward-model --type multihead``'s defaults
    (the bundled MiniLM frozen, each head fitted to convergence on its cached pooled features), one head
    per objective, ``moslim_classes`` quantile classes, (prompt, response) pairs."""
    from pluralign.reward_models.multihead.config import MultiHeadRewardConfig

    s = world.settings
    return MultiHeadRewardConfig(
        output_dir=str(output_dir),
        objective=list(world.objectives.names),
        num_classes=[s.moslim_classes],
        binning="quantile",
        input_format="pair",
        max_length=256,
        eval_fraction=0.1,
        disable_tqdm=True,
        report_to="none",
        seed=s.seed,
    )


def train_reward_model(world: Any, output_dir: Path, progress: Progress | None = print) -> tuple[Path, dict[str, Any]]:
    """The multi-head reward model in ``output_dir`` (trained once, reused when finished) and its metrics."""
    from pluralign.reward_models.multihead.trainer import METRICS_FILE, train_multihead

    log = progress or (lambda _m: None)
    output_dir = Path(output_dir)
    if (output_dir / METRICS_FILE).is_file():
        log(f"moslim: multi-head reward model {output_dir} already trained, reused")
        return output_dir, json.loads((output_dir / METRICS_FILE).read_text())
    rows = reward_model_rows(world, log)
    metrics = train_multihead(reward_model_config(world, output_dir), rows=rows, progress=log)
    return output_dir, metrics


def moslim_config(world: Any, output_dir: Path, reward_model: Path, **overrides: Any):
    """MOSLIM-RLOO on a chat world: the preference line in the prompt, LoRA, the world's RL budget."""
    from pluralign.methods.moslim.config import config_class
    from pluralign.models.state import gpu_available
    from pluralign.worlds.chat.world import LORA_TARGETS

    s = world.settings
    names = list(world.objectives.names)
    words = LEVEL_WORDS.get(s.moslim_classes)
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        model_name_or_path=world.base_model,
        reward_model=str(reward_model),
        template=preference_template(names),
        level_names=json.dumps({n: words for n in names}) if words else None,
        response_marker=None,  # chat prompts: the line goes at the end of the last user turn
        preferences_per_prompt=s.moslim_preferences_per_prompt,
        unspecified_probability=0.2,
        target_sampling="preference",
        stats="head",
        max_steps=s.rl_steps,
        per_device_train_batch_size=s.rl_batch_size,
        num_generations=s.rl_generations,
        max_completion_length=int(world.generation_kwargs.get("max_new_tokens", s.max_new_tokens)),
        learning_rate=s.rl_learning_rate,
        beta=s.rl_beta,
        temperature=1.0,
        use_peft=True,
        lora_r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_target_modules=list(LORA_TARGETS),
        activation_checkpointing=False,  # TRL's default (on) turns the KV cache off in generation
        dataloader_pin_memory=gpu_available(),  # without an accelerator pinning only warns
        logging_steps=5,
        disable_tqdm=True,
        report_to=[],
        seed=s.seed,
    )
    settings.update(overrides)
    return config_class(str(settings.get("algorithm", "rloo")))(**settings)


def train_moslim_chat(
    world: Any,
    output_dir: Path,
    progress: Progress | None = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """MOSLIM on the chat world: the multi-head reward model, then RLOO with the preference in the prompt.
    A finished model in ``output_dir`` is reused; ``overrides`` set RL config fields."""
    from pluralign.methods.moslim.trainer import RUN_FILE, train_moslim
    from pluralign.models.manifest import MANIFEST_NAME
    from pluralign.training.rl import world_prompts

    log = progress or (lambda _m: None)
    out = Path(output_dir)
    run_file = out / RUN_FILE
    if run_file.is_file() and (out / MANIFEST_NAME).is_file():
        log(f"moslim: {out} already trained, reused")
        return out
    t = time.time()
    rm_dir, metrics = train_reward_model(world, out / RM_DIR, log)
    rm_seconds = time.time() - t
    config = moslim_config(world, out, rm_dir, **overrides)
    train_moslim(config, prompts=world_prompts(world), progress=log, callbacks=callbacks)
    run = json.loads(run_file.read_text())
    run["reward_model"] = {**metrics, "seconds_this_run": round(rm_seconds, 1)}
    run_file.write_text(json.dumps(run, indent=2))
    return out

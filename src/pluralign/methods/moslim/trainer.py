"""MOSLIM training: prompts with sampled intensity targets, the mapped multi-head reward, TRL's optimiser.

MOSLIM changes only two things in a scalar-reward RL run, so no TRL trainer is subclassed:
the training prompts (each carries a preference block with intensities and a mask sampled per row,
:func:`preference_prompts`) and the reward function (:class:`MoslimReward`, which reads the block back
from the prompt, scores the completion with every head and applies :class:`RewardMapping`). GRPO, RLOO
and online DPO then run unchanged.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.loading import load_prompts as read_prompts, response_text
from pluralign.errors import ConfigError, DataError
from pluralign.methods.moslim.mapping import RewardMapping, preference_to_levels
from pluralign.methods.moslim.template import PreferenceTemplate
from pluralign.models.manifest import Manifest
from pluralign.objectives.learned.multihead import MultiHeadRewardScorer
from pluralign.training.progress import use_progress_lines

RUN_FILE = "moslim_run.json"


TARGET_SAMPLINGS = ("uniform", "preference")


def sample_targets(
    rng: random.Random,
    num_classes: Sequence[int],
    unspecified_probability: float,
    sampling: str = "uniform",
    preference_mapping: str = "linear",
) -> list[int | None]:
    """Intensity targets for one training prompt; each objective left unspecified with the given chance
    (never all of them).

    ``uniform``: every objective's level independently uniform (any combination, the paper's setting);
    ``preference``: a preference w drawn uniformly from the simplex and mapped to levels exactly as
    :meth:`MoslimPolicy.generate` maps a user's preference, so training covers the requests inference makes.
    """
    if sampling == "uniform":
        targets: list[int | None] = [rng.randrange(k) for k in num_classes]
    elif sampling == "preference":
        cuts = sorted(rng.random() for _ in range(len(num_classes) - 1))
        weights = [b - a for a, b in zip([0.0, *cuts], [*cuts, 1.0])]  # uniform on the simplex
        targets = list(preference_to_levels(weights, num_classes, preference_mapping))
    else:
        raise ConfigError(f"target_sampling {sampling!r} is not one of {', '.join(TARGET_SAMPLINGS)}")
    masked = [rng.random() < unspecified_probability for _ in num_classes]
    if all(masked):
        masked[rng.randrange(len(masked))] = False
    return [None if m else t for t, m in zip(targets, masked)]


def preference_prompts(
    prompts: Sequence[Any],
    template: PreferenceTemplate,
    per_prompt: int,
    unspecified_probability: float,
    seed: int = 0,
    sampling: str = "uniform",
    preference_mapping: str = "linear",
) -> list[Any]:
    """``per_prompt`` rows per prompt, each with its own sampled targets written into the prompt."""
    rng = random.Random(seed)
    rows = []
    for p in prompts:
        for _ in range(per_prompt):
            targets = sample_targets(rng, template.num_classes, unspecified_probability, sampling, preference_mapping)
            rows.append(template.apply(p, targets))
    rng.shuffle(rows)
    return rows


class MoslimReward:
    """TRL reward function: r = (1/k) sum_i m_i (p_i[t_i] - mean_i) / std_i, targets and mask read from the prompt."""

    __name__ = "moslim"

    def __init__(self, scorer: MultiHeadRewardScorer, template: PreferenceTemplate, mapping: RewardMapping) -> None:
        if scorer.objectives != template.objectives:
            raise ConfigError(
                f"the reward model's heads {scorer.objectives} differ from the template's objectives {template.objectives}"
            )
        self.scorer = scorer
        self.template = template
        self.mapping = mapping

    def targets_and_mask(self, prompts: Sequence[Any]) -> tuple[list[Any], np.ndarray, np.ndarray]:
        clean, targets, mask = [], [], []
        for p in prompts:
            plain, t = self.template.parse(p)
            clean.append(plain)  # messages stay messages: the reward model renders them as in its training
            targets.append([-1 if x is None else x for x in t])
            mask.append([0.0 if x is None else 1.0 for x in t])
        return clean, np.asarray(targets, dtype=np.int64), np.asarray(mask)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        clean, targets, mask = self.targets_and_mask(prompts)
        probs = self.scorer.probabilities(clean, [response_text(c) for c in completions])
        heads = [probs[n] for n in self.template.objectives]
        rewards = self.mapping(heads, targets, mask)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:  # GRPO / RLOO log these next to the reward
            for i, name in enumerate(self.template.objectives):
                on = mask[:, i] != 0
                if on.any():
                    hit = heads[i][np.arange(len(clean)), np.where(on, targets[:, i], 0)][on]
                    log_metric(f"moslim/p_target_{name}", float(hit.mean()))
        return [float(r) for r in rewards]


def build_template(config: Any, scorer: MultiHeadRewardScorer) -> PreferenceTemplate:
    return PreferenceTemplate(
        objectives=scorer.objectives,
        num_classes=scorer.spec.num_classes,
        template=config.template,
        level_format=config.level_format,
        unspecified=config.unspecified,
        response_marker=config.response_marker,
        level_names=config.level_names_dict(),
    )


def load_prompts(config: Any) -> list[Any]:
    """Distinct prompts of ``config.dataset`` (first-seen order, at most ``max_prompts``)."""
    if not config.dataset:
        raise ConfigError("--dataset is required: a local file or hub id with a prompt column")
    return read_prompts(config.dataset, config.prompt_column, config.max_prompts or None)


def trainer_class(algorithm: str) -> type:
    if algorithm == "grpo":
        from trl import GRPOTrainer

        return GRPOTrainer
    if algorithm == "rloo":
        from trl import RLOOTrainer

        return RLOOTrainer
    from trl.experimental.online_dpo import OnlineDPOTrainer

    return OnlineDPOTrainer


def train_moslim(
    config: Any,
    prompts: Sequence[Any] | None = None,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
) -> Path:
    """Run MOSLIM RL from ``config.model_name_or_path`` and save a steerable model to ``config.output_dir``.

    ``prompts`` may be given directly; otherwise the distinct prompts of ``config.dataset`` are used.
    ``callbacks`` (🤗 TrainerCallback) go to the trainer.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer

    from pluralign.models.loading import check_model_source

    started = time.time()
    if not config.model_name_or_path:
        raise ConfigError("--model_name_or_path is required: the starting policy (any causal LM)")
    if not config.reward_model:
        raise ConfigError("--reward_model is required: a dir from `pluralign train reward-model --type multihead`")
    start = check_model_source(config.model_name_or_path, "--model_name_or_path")
    scorer = MultiHeadRewardScorer(config.reward_model)
    template = build_template(config, scorer)
    mapping = RewardMapping(scorer.objectives, scorer.spec.num_classes, config.stats, scorer.spec.class_stats)
    reward = MoslimReward(scorer, template, mapping)
    prompts = list(prompts) if prompts is not None else load_prompts(config)
    if not prompts:
        raise DataError("no training prompts; give a dataset with a prompt column")
    rows = preference_prompts(
        prompts,
        template,
        config.preferences_per_prompt,
        config.unspecified_probability,
        config.seed,
        config.target_sampling,
        config.preference_mapping,
    )

    tokenizer = AutoTokenizer.from_pretrained(start)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    output_dir = Path(config.output_dir)
    trainer = trainer_class(config.algorithm)(
        model=start,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": rows}),
        processing_class=tokenizer,
        peft_config=config.peft_config(),
        callbacks=list(callbacks) if callbacks else None,
    )
    use_progress_lines(trainer, progress, prefix=f"moslim {config.algorithm}: ")
    progress(f"moslim: {config.algorithm} on {len(rows)} prompts with sampled intensities ({len(prompts)} distinct)")
    trainer.train()
    reward_key = "objective/scores" if config.algorithm == "online_dpo" else "reward"  # online DPO's log name
    rewards = [h[reward_key] for h in trainer.state.log_history if reward_key in h]
    if trainer.accelerator.is_main_process:
        model = trainer.model
        if config.use_peft:
            model = model.merge_and_unload()
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        Manifest(
            method="moslim",
            objectives=scorer.objectives,
            template=template.to_dict(),
            mapping=config.preference_mapping,
            base_model=config.model_name_or_path,
            extra={
                "reward_model": str(Path(config.reward_model).resolve()),
                "algorithm": config.algorithm,
                "stats": config.stats,
                "num_classes": scorer.spec.num_classes,
                "zero_weight": config.zero_weight,
            },
        ).save(output_dir)
    trainer.accelerator.wait_for_everyone()
    record = {
        "algorithm": config.algorithm,
        "steps": trainer.state.global_step,
        "first_reward": rewards[0] if rewards else None,
        "last_reward": rewards[-1] if rewards else None,
        "wall_seconds": time.time() - started,
    }
    if trainer.accelerator.is_main_process:
        (output_dir / RUN_FILE).write_text(json.dumps(record, indent=2))
    progress(f"moslim: {record['steps']} steps, reward {record['first_reward']} -> {record['last_reward']}")
    return output_dir

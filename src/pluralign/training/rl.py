"""Reinforcement learning on weighted objectives, shared by MORLHF and Rewarded Soups (METHODS.md §4).

Both baselines run TRL's RLOO on one scalar reward, the weighted sum of z-scored objectives
``sum_i w_i * (r_i - mean_i) / std_i`` with the normalisation statistics of the objective set: MORLHF once
per preference point of a grid, Rewarded Soups once per objective (one-hot weights). This module holds
what those runs have in common: the reward function (:class:`ScalarisedReward`), the config fields
(:class:`ObjectiveRLConfig`), the trainer (:class:`ScalarisedRLOOTrainer`), reading prompts and
statistics from a dataset (:func:`prepare_objectives_and_prompts`), and one run saved to disk
(:func:`train_weighted_policy`). RLOO was chosen over GRPO because it keeps the KL penalty in the reward,
the closest TRL trainer to the PPO that MORLHF was published with (TRL 1.x no longer ships PPO).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from trl import RLOOConfig, RLOOTrainer

from pluralign.data.loading import load_any, response_text, to_samples, unique_prompts
from pluralign.errors import ConfigError, DataError
from pluralign.models.loading import check_model_source, load_tokenizer
from pluralign.models.manifest import Manifest, is_finished
from pluralign.models.sequences import trl_text
from pluralign.models.state import is_main_process, wait_for_everyone
from pluralign.objectives.scoring import ScoreCache, score_samples
from pluralign.objectives.set import ObjectiveSet
from pluralign.preferences.weights import validate_weights
from pluralign.training.args import DevicePrecisionMixin, LoraMixin
from pluralign.training.progress import use_progress_lines

RUN_DONE = "pluralign_run.json"  # written last in a run folder: a rerun skips finished runs


class ScalarisedReward:
    """TRL reward function: ``sum_i w_i * z_i(prompt, completion)`` with the objective set's statistics.

    Called by TRL as ``reward(prompts=..., completions=..., **columns)``; prompts and completions may be
    plain text or conversational messages.
    """

    def __init__(self, objectives: ObjectiveSet, weights: Sequence[float]) -> None:
        objectives.require_stats()
        self.objectives = objectives
        self.weights = validate_weights(weights, k=len(objectives))
        self.__name__ = "scalarised_" + "_".join(f"{n}{w:g}" for n, w in zip(objectives.names, self.weights))

    def zscores(self, prompts: Sequence[Any], completions: Sequence[Any]) -> np.ndarray:
        """(N, K) z-scored objective values of the completions (conversational prompts stay messages: each
        objective renders them as it was trained, e.g. a reward model with its chat template)."""
        texts_c = [response_text(c) for c in completions]
        return self.objectives.zscores(self.objectives.score(list(prompts), texts_c))

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [float(x) for x in self.zscores(prompts, completions) @ self.weights]


@dataclass
class ObjectiveRLConfig(DevicePrecisionMixin, LoraMixin, RLOOConfig):
    """RLOO options plus where the prompts, the objectives and their statistics come from (fp32 without a GPU)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "starting (SFT) model: folder or hub id"})
    dataset: str | None = field(
        default=None, metadata={"help": "prompts (and responses, for fitting statistics): hub id or local file"}
    )
    objective: list[str] = field(
        default_factory=list, metadata={"help": "objective spec, one per objective (e.g. sentiment conciseness)"}
    )
    objectives_file: str | None = field(
        default=None,
        metadata={
            "help": "objectives + statistics JSON from `pluralign score`; else fitted on the dataset's responses"
        },
    )
    prompt_column: str = field(default="prompt", metadata={"help": "dataset column holding the prompt"})
    response_column: str | None = field(default=None, metadata={"help": "dataset column holding the response"})
    response_marker: str | None = field(
        default="\n\nAssistant:", metadata={"help": "where whole-dialogue pairwise rows (HH-RLHF) are split"}
    )
    max_prompts: int | None = field(default=None, metadata={"help": "use at most this many distinct prompts"})
    use_peft: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "LoRA target modules"})


class ScalarisedRLOOTrainer(RLOOTrainer):
    """RLOO whose only reward is :class:`ScalarisedReward` for fixed ``weights``; the rest is TRL's."""

    def __init__(self, model: Any, objectives: ObjectiveSet, weights: Sequence[float], **kwargs: Any) -> None:
        self.scalarised_reward = ScalarisedReward(objectives, weights)
        super().__init__(model=model, reward_funcs=self.scalarised_reward, **kwargs)


def prepare_objectives_and_prompts(
    config: ObjectiveRLConfig, progress: Callable[[str], None] = print
) -> tuple[ObjectiveSet, list[Any]]:
    """Objectives with statistics, and the distinct training prompts, from the config's dataset.

    Statistics come from ``objectives_file`` when given, else from scoring the dataset's responses
    (cached in ``output_dir/scores.sqlite``, so a rerun does not score again). A prompt-only dataset
    therefore needs ``objectives_file``.
    """
    if not config.dataset:
        raise ConfigError("--dataset is required: a local file or hub id with prompts (and responses)")
    ds = load_any(config.dataset)
    cols = set(ds.column_names)
    has_responses = bool(cols & {"chosen", "completion", "response", config.response_column or "response"})
    samples = None
    if has_responses:
        samples = to_samples(ds, config.prompt_column, config.response_column, config.response_marker)
        prompts = [s["prompt"] for s in samples]
    elif config.prompt_column in cols:
        prompts = list(ds[config.prompt_column])
    else:
        raise DataError(
            f"dataset has no prompt column {config.prompt_column!r} (columns: {', '.join(sorted(cols))}); "
            "pass --prompt_column NAME"
        )
    if config.objectives_file:
        objectives = ObjectiveSet.load(config.objectives_file)
        if config.objective and list(config.objective) != objectives.names:
            raise ConfigError(
                f"--objective {config.objective} differs from {config.objectives_file}'s {objectives.names}; drop one"
            )
        objectives.require_stats()
    elif samples is None:
        raise ConfigError(
            "the dataset holds prompts only, so statistics cannot be fitted on it: pass --objectives_file "
            "(written by `pluralign score`)"
        )
    else:
        if not config.objective:
            raise ConfigError("no objectives: pass --objective NAME for each objective, or --objectives_file")
        objectives = ObjectiveSet.from_specs(config.objective)
        progress(f"scoring {len(samples)} responses to fit normalisation statistics")
        cache = ScoreCache(Path(config.output_dir) / "scores.sqlite")
        try:
            objectives.fit_stats(score_samples(samples, objectives, cache))
        finally:
            cache.close()
    return objectives, unique_prompts(prompts, config.max_prompts)


def check_start_model(config: ObjectiveRLConfig) -> str:
    if not config.model_name_or_path:
        raise ConfigError("--model_name_or_path is required: the SFT model every RL run starts from")
    return check_model_source(config.model_name_or_path, "--model_name_or_path")


def run_is_done(run_dir: Path) -> bool:
    return is_finished(run_dir, RUN_DONE)


def train_runs(
    config: ObjectiveRLConfig,
    objectives: ObjectiveSet,
    prompts: Sequence[Any],
    runs: Sequence[tuple[str, str, Sequence[float]]],
    method: str,
    progress: Callable[[str], None] = print,
    callbacks: Sequence[Any] | None = None,
) -> tuple[str, Any, Path]:
    """One :func:`train_weighted_policy` run per ``(folder name, label, weights)`` into ``output_dir/runs/``,
    finished runs skipped (MORLHF: a grid of weights; Soups: one-hot weights). Returns (start model, its
    tokenizer, output_dir)."""
    start = check_start_model(config)
    out = Path(config.output_dir)
    tokenizer = load_tokenizer(start)
    for i, (name, label, weights) in enumerate(runs, 1):
        run_dir = out / "runs" / name
        if run_is_done(run_dir):
            progress(f"{method} run {i}/{len(runs)} ({label}): already trained, skipped")
        else:
            progress(f"{method} run {i}/{len(runs)} ({label}): RLOO for {config.max_steps} steps")
            train_weighted_policy(
                config, objectives, weights, prompts, run_dir, processing_class=tokenizer, callbacks=callbacks
            )
    return start, tokenizer, out


def save_runs_model(out: Path, tokenizer: Any, manifest: Manifest) -> Path:
    """The model directory of a set of runs: the tokenizer and ``pluralign.json`` (main process only)."""
    if is_main_process():
        tokenizer.save_pretrained(str(out))
        manifest.save(out)
    wait_for_everyone()
    return out


def train_weighted_policy(
    config: ObjectiveRLConfig,
    objectives: ObjectiveSet,
    weights: Sequence[float],
    prompts: Sequence[Any],
    run_dir: str | Path,
    processing_class: Any = None,
    callbacks: Sequence[Any] | None = None,
) -> Path:
    """One RLOO run from ``config.model_name_or_path`` on the reward ``sum_i w_i z_i``; saved to ``run_dir``.

    The run folder holds the policy (safetensors, or a LoRA adapter), its tokenizer and
    ``pluralign_run.json`` (weights and final metrics), written last so a rerun skips finished runs.
    ``callbacks`` (🤗 TrainerCallback) go to the trainer.
    """
    from datasets import Dataset

    run_dir = Path(run_dir)
    start = check_start_model(config)
    args = copy.copy(config)  # dataclasses.replace would re-run __post_init__ on derived fields
    args.output_dir = str(run_dir / "checkpoints")
    if processing_class is None:
        processing_class = load_tokenizer(start)
    trainer = ScalarisedRLOOTrainer(
        model=start,
        objectives=objectives,
        weights=weights,
        args=args,
        # TRL tokenises text prompts with the tokenizer's defaults: no BOS text of their own (one BOS in all)
        train_dataset=Dataset.from_dict({"prompt": [trl_text(processing_class, p) for p in prompts]}),
        processing_class=processing_class,
        peft_config=config.peft_config(),
        callbacks=list(callbacks) if callbacks else None,
    )
    use_progress_lines(trainer, prefix=f"rloo {run_dir.name}: ")
    trainer.train()
    trainer.save_model(str(run_dir))
    if trainer.accelerator.is_main_process:
        processing_class.save_pretrained(str(run_dir))
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    record = {
        "weights": [float(w) for w in trainer.scalarised_reward.weights],
        "objectives": objectives.names,
        "steps": trainer.state.global_step,
        "first_reward": rewards[0] if rewards else None,
        "last_reward": rewards[-1] if rewards else None,
        "peft": bool(config.use_peft),
    }
    if trainer.accelerator.is_main_process:
        (run_dir / RUN_DONE).write_text(json.dumps(record, indent=2))
    trainer.accelerator.wait_for_everyone()
    return run_dir


def demo_rl_config(config_class: type, world: Any, output_dir: str | Path, **overrides: Any) -> Any:
    """A baseline's config on a demo world: ``DEMO_RL_SETTINGS``, the world's completion length, then ``overrides``."""
    settings = {
        **DEMO_RL_SETTINGS,
        "max_completion_length": int(world.generation_kwargs.get("max_new_tokens", 32)),
        **overrides,
    }
    return config_class(output_dir=str(output_dir), model_name_or_path=world.base_model, **settings)


def world_prompts(world: Any) -> list[Any]:
    """The distinct training prompts of a demo world."""
    return unique_prompts([s["prompt"] for s in world.train])


# RL settings of the demo world, shared by MORLHF and Soups so both spend the same steps per run.
DEMO_RL_SETTINGS: dict[str, Any] = {
    "max_steps": 20,
    "per_device_train_batch_size": 16,
    "num_generations": 4,
    "learning_rate": 1e-4,
    "beta": 0.05,
    "temperature": 1.0,
    "logging_steps": 10,
    "disable_tqdm": True,
    "activation_checkpointing": False,  # TRL's default (on) only costs time on a tiny CPU model; RiC's demo has it off
    "save_strategy": "no",
    "report_to": [],
    "seed": 0,
}


def with_objectives_and_prompts(train: Callable[..., Path]) -> Callable[[ObjectiveRLConfig], Path]:
    """``train(config, objectives, prompts)`` as ``train(config)``: objectives and prompts read from the dataset."""
    return lambda config: train(config, *prepare_objectives_and_prompts(config))

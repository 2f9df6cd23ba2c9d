"""``pluralign train reward-model --type classifier``: fine-tune a pretrained model as a reward model.

TRL's ``RewardTrainer`` trains a one-output sequence-classification model on the pairs (Bradley-Terry
loss): the whole model, LoRA adapters + the score head (``--use_peft``; merged at the end), or only the
top ``--trainable_layers`` blocks + head on the cached hidden states of the frozen blocks below
(:mod:`pluralign.models.frozen_layers`; ``0``: the head alone, fitted to convergence on the cached pooled
features). Any ``AutoModelForSequenceClassification`` backbone works: an encoder (the bundled MiniLM) or
a causal LM such as ``builtin:smollm2-135m-instruct``, whose dialogue is rendered with its chat template.
The head reads an encoder by the attention-masked mean of a middle block (``--pooling``,
``--pooling_layer``: :mod:`pluralign.models.encoder_pooling`), a causal LM at its last real token.

The pairs are tokenized here, by :func:`pluralign.models.truncation.encode_pairs`, so training and scoring
keep the same part of long dialogues (the response and the last prompt tokens); batches group pairs of
similar length. Checkpoints go to ``output_dir/checkpoints`` and a rerun resumes from the last one (and
from the cached features). The saved directory is a plain Hugging Face model (safetensors) + tokenizer
+ ``pluralign.json`` (method "classifier") + ``eval_results.json`` (held-out pairwise accuracy and the
seconds each stage took).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.data.pairs import load_pairs, split_pairs
from pluralign.errors import ConfigError, DataError
from pluralign.models.encoder_pooling import is_encoder
from pluralign.models.manifest import Manifest
from pluralign.models.state import is_main_process, wait_for_everyone
from pluralign.models.truncation import PairFormat, encode_pairs
from pluralign.objectives.trained import record_held_out_accuracy, update_held_out
from pluralign.reward_models.classifier.config import HEAD_ONLY_ABOVE_BLOCKS, ClassifierRewardConfig
from pluralign.training.progress import StageTimer, use_progress_lines

CHECKPOINTS = "checkpoints"
FEATURE_CACHE = "feature_cache"


def resolve_backbone(name: str | None) -> str:
    """The backbone folder or hub id; ``None`` and ``builtin:all-minilm-l6-v2`` are the bundled MiniLM."""
    from pluralign.models.embeddings import BUILTIN_MINILM, resolve_encoder

    if name in (None, "", BUILTIN_MINILM):
        return resolve_encoder(None)
    from pluralign.models.loading import check_model_source

    return check_model_source(str(name), what="reward-model backbone (--model_name_or_path)")


def uses_chat_template(tokenizer: Any, wanted: bool | None) -> bool:
    """Whether dialogues are rendered with the chat template: by default when the tokenizer has one."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if wanted and not has:
        raise ConfigError("--use_chat_template true: the backbone's tokenizer has no chat template; drop the flag")
    return has if wanted is None else bool(wanted)


def pair_format(tokenizer: Any, chat: bool = False) -> PairFormat:
    """TRL's convention: prompt + response + EOS (where the tokenizer has one) as one text; with ``chat``
    the prompt is the rendered chat template, which holds its own special tokens."""
    return PairFormat("concat", suffix=tokenizer.eos_token or "", add_special_tokens=not chat, chat=chat)


def tokenize_pairs(
    tokenizer: Any, pairs: Sequence[dict[str, Any]], max_length: int, chat: bool = False
) -> dict[str, list]:
    """``{"chosen_ids", "rejected_ids", "length"}``: RewardTrainer's pre-tokenized columns, and each pair's
    padded length (what length-grouped batches sort by)."""
    prompts = [p["prompt"] for p in pairs]
    fmt = pair_format(tokenizer, chat)
    chosen = encode_pairs(tokenizer, prompts, [p["chosen"] for p in pairs], max_length, fmt)["input_ids"]
    rejected = encode_pairs(tokenizer, prompts, [p["rejected"] for p in pairs], max_length, fmt)["input_ids"]
    return {"chosen_ids": chosen, "rejected_ids": rejected, "length": [max(len(c), len(r)) for c, r in zip(chosen, rejected)]}  # fmt: skip


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def load_backbone(name: str, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """A one-output sequence-classification model and its tokenizer, with a pad token that is not the EOS
    (a classifier pools at the last token that is not padding: the appended EOS must not look like padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from pluralign.models.loading import load_error

    loader_log = hf_logging.get_logger("transformers.modeling_utils")
    quiet = _DropLoadReport()  # the new score head is "missing from the checkpoint" by design
    loader_log.addFilter(quiet)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=1, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise load_error(name, "reward-model backbone (--model_name_or_path)", exc) from exc
    finally:
        loader_log.removeFilter(quiet)
    eos = tokenizer.eos_token
    if tokenizer.pad_token is None or (eos is not None and tokenizer.pad_token == eos):
        unk = tokenizer.unk_token
        tokenizer.pad_token = unk if unk is not None and unk != eos else (tokenizer.pad_token or eos)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def apply_pooling(
    model: Any, pooling: str = "auto", pooling_layer: int | None = None, model_name: str | None = None
) -> dict[str, Any]:
    """What the head reads (``--pooling``, ``--pooling_layer``; :mod:`pluralign.models.encoder_pooling`),
    applied to ``model`` in place: the blocks above the pooled one are dropped and, with mean pooling, the
    head reads the attention-masked mean of the last kept block. ``model_name`` is the backbone as the user
    named it (the bundled MiniLM's default block differs). Returns what ``pluralign.json`` records
    (``pooling``, ``pooling_layer``) and ``blocks_dropped``."""
    from pluralign.models.embeddings import default_layer
    from pluralign.models.encoder_pooling import keep_blocks, resolve_pooled_layer, resolve_pooling, use_mean_pooling
    from pluralign.models.frozen_layers import transformer_blocks

    pooling = resolve_pooling(pooling, model.config)
    layer, dropped = None, 0
    if pooling_layer is not None or default_layer(model_name) != -1:
        blocks = len(transformer_blocks(model))
        layer = resolve_pooled_layer(pooling_layer, model_name, blocks)
        keep_blocks(model, layer)
        dropped = blocks - layer
    if pooling == "mean":
        use_mean_pooling(model)
    return {"pooling": pooling, "pooling_layer": layer, "blocks_dropped": dropped}


def resolve_trainable_layers(config: ClassifierRewardConfig, model: Any) -> int | None:
    """``--trainable_layers`` as the run uses it: None for the whole model (or LoRA on it), else N blocks.

    Unset means the measured default: the head alone on cached features (0) when the backbone has more than
    ``HEAD_ONLY_ABOVE_BLOCKS`` blocks (a smaller model, or ``--use_peft``, trains whole); -1 asks for the
    whole model. On a few hundred real pairs the head alone generalises as well as any fine-tune measured,
    deterministically and in a fraction of the time (docs/reward_models.md).
    """
    layers = config.trainable_layers
    if layers == -1 or (layers is None and config.use_peft):
        return None
    if layers is None:
        text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        blocks = int(getattr(text, "num_hidden_layers", 0) or 0)
        return 0 if blocks > HEAD_ONLY_ABOVE_BLOCKS else None
    return layers


def what_trains(config: ClassifierRewardConfig) -> str:
    layers = config.trainable_layers
    if layers is None:
        return "LoRA adapters + head" if config.use_peft else "the whole model"
    return "the head on cached features" if layers == 0 else f"the top {layers} blocks + head on cached states"


def lora_for(model: Any, config: ClassifierRewardConfig) -> Any:
    """The LoRA config (``--use_peft``) with the score head fully trained and saved (``modules_to_save``)."""
    from pluralign.models.frozen_layers import head_module

    peft_config = config.peft_config()
    if peft_config is not None:
        head = head_module(model)[0].split(".")[0]
        peft_config.modules_to_save = sorted(set(peft_config.modules_to_save or []) | {head})
    return peft_config


def feature_cache_for(
    root: str | Path, backbone: str, trainable_layers: int, model: Any, pooling: dict[str, Any] | None = None
) -> Any:
    """The cache of ``backbone``'s frozen part when its top ``trainable_layers`` blocks train (0: the head),
    read as ``pooling`` says (:func:`apply_pooling`; the model's own pooling of the whole model adds nothing
    to the identity, so caches made before pooling was an option stay valid)."""
    from pluralign.models.feature_cache import FeatureCache
    from pluralign.models.frozen_layers import cache_identity

    identity = cache_identity(backbone, trainable_layers) + f":pad{model.config.pad_token_id}"
    meta: dict[str, Any] = {"trainable_layers": trainable_layers}
    if pooling and (pooling["pooling"] != "model" or pooling["blocks_dropped"]):
        identity += f":{pooling['pooling']}-of-block{pooling['pooling_layer'] or 'last'}"
        meta.update(pooling=pooling["pooling"], pooling_layer=pooling["pooling_layer"])
    return FeatureCache(root, identity, meta)


def _fit_head(model: Any, cache: Any, columns: dict[str, list], l2: float | None, seed: int) -> float:
    """``--trainable_layers 0``: the linear head fitted on the cached pooled features of the training pairs
    (its L2 penalty cross-validated on them unless given); returns the penalty."""
    import torch

    from pluralign.models.feature_cache import ids_key
    from pluralign.models.frozen_layers import head_module
    from pluralign.training.bradley_terry import choose_l2, fit_linear_head

    chosen = torch.stack(cache.get([ids_key(x) for x in columns["chosen_ids"]]))
    rejected = torch.stack(cache.get([ids_key(x) for x in columns["rejected_ids"]]))
    if l2 is None:
        l2 = choose_l2(chosen, rejected, seed=seed)
    w = fit_linear_head(chosen, rejected, l2)
    _, head = head_module(model)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0] = w.to(head.weight.dtype)
        if head.bias is not None:
            head.bias.zero_()
    return l2


def _cached_collator(cache: Any, pad_token_id: int) -> Callable[[list[dict]], dict]:
    """RewardTrainer's collator plus the stored hidden states of the batch (chosen first, right-padded)."""
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from pluralign.models.feature_cache import ids_key

    base = DataCollatorForPreference(pad_token_id=pad_token_id)

    def collate(examples: list[dict]) -> dict:
        batch = base(examples)
        ids = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        states = cache.get([ids_key(x) for x in ids])
        out = torch.zeros(len(states), batch["input_ids"].shape[1], states[0].shape[-1], dtype=states[0].dtype)
        for i, s in enumerate(states):
            out[i, : s.shape[0]] = s
        batch["cached_states"] = out
        return batch

    return collate


def _cached_trainer_class() -> type:
    from trl import RewardTrainer

    class CachedStatesRewardTrainer(RewardTrainer):
        """RewardTrainer whose lower blocks are skipped: each batch's stored hidden states go into the first
        trained block (:class:`pluralign.models.frozen_layers.SkipLowerBlocks`)."""

        skip = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if "cached_states" in inputs:  # training and evaluation steps alike
                self.skip.inject(inputs.pop("cached_states"))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return CachedStatesRewardTrainer


def train_classifier(
    config: ClassifierRewardConfig,
    pairs: Sequence[dict[str, Any]] | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Train, save and evaluate a classifier reward model; returns the output directory."""
    from peft import PeftModel

    timer = StageTimer()
    start = time.perf_counter()
    with timer("load"):
        if pairs is None:
            if not config.dataset:
                raise DataError("--dataset is required: a pairs file (prompt/chosen/rejected) or hub id")
            pairs = load_pairs(
                config.dataset, config.prompt_column, skip_invalid=config.skip_invalid_pairs, report=progress
            )
        pairs = list(pairs)[: config.max_pairs or None]
        train_pairs, held_pairs = split_pairs(pairs, config.eval_fraction, config.seed)
        # the head alone (--trainable_layers 0) is fitted to convergence: nothing to stop early
        val_fraction = 0.0 if config.trainable_layers == 0 else config.validation_fraction
        fit_pairs, val_pairs = split_pairs(train_pairs, val_fraction, config.seed)
        if len(fit_pairs) < 2:
            raise DataError(f"{len(fit_pairs)} training pairs; a classifier reward model needs at least 2")
        backbone = resolve_backbone(config.model_name_or_path)
        model, tokenizer = load_backbone(backbone, config.trust_remote_code)
        config.trainable_layers = resolve_trainable_layers(config, model)  # by the depth of the backbone as loaded
        pooling = apply_pooling(model, config.pooling, config.pooling_layer, config.model_name_or_path)
        chat = uses_chat_template(tokenizer, config.use_chat_template)
    with timer("tokenize"):
        columns = tokenize_pairs(tokenizer, fit_pairs, config.max_length, chat)
        val_columns = tokenize_pairs(tokenizer, val_pairs, config.max_length, chat) if val_pairs else None
    out = Path(config.output_dir)
    layers = config.trainable_layers
    reads = "the masked mean" if pooling["pooling"] == "mean" else (
        "its [CLS] pooler" if is_encoder(model.config) else "the last real token")
    block = f" of block {pooling['pooling_layer']}" if pooling["blocks_dropped"] else ""
    progress(f"classifier: training {what_trains(config)} of {Path(backbone).name} on {len(fit_pairs)} pairs "
             f"({len(val_pairs)} for validation, {len(held_pairs)} held out); the head reads {reads}{block}")  # fmt: skip
    cache = None
    if layers is not None:
        from pluralign.models.frozen_layers import extract, freeze_below

        freeze_below(model, layers)
        root = config.feature_cache or out / FEATURE_CACHE
        cache = feature_cache_for(root, backbone, layers, model, pooling)
        sequences = columns["chosen_ids"] + columns["rejected_ids"]
        if val_columns and layers > 0:
            sequences += val_columns["chosen_ids"] + val_columns["rejected_ids"]
        with timer("features"):
            computed = 0
            if is_main_process():  # one process computes, every process then reads the cache
                computed = extract(model, sequences, cache, layers, tokenizer.pad_token_id, progress=progress)
            wait_for_everyone()
            cache = feature_cache_for(root, backbone, layers, model, pooling)
        progress(f"classifier: features of {len(sequences)} sequences ({computed} computed, the rest cached)")
    if layers == 0:
        with timer("train"):
            head_l2 = _fit_head(model, cache, columns, config.head_l2, config.seed)
        progress(f"classifier: head fitted with L2 penalty {head_l2:g}")
        trained = model
    else:
        trained = _train_with_reward_trainer(config, model, tokenizer, columns, val_columns, cache, timer, progress)
    train_seconds = time.perf_counter() - start
    if is_main_process():
        with timer("save"):
            if isinstance(trained, PeftModel):
                trained = trained.merge_and_unload()
            trained.save_pretrained(str(out), safe_serialization=True)
            tokenizer.save_pretrained(str(out))
            Manifest(
                method="classifier",
                objectives=[config.objective_name],
                base_model=config.model_name_or_path or "builtin:all-minilm-l6-v2",
                extra={
                    "input_format": "concat",
                    "append_eos": bool(tokenizer.eos_token),
                    "chat_template": chat,
                    "pooling": pooling["pooling"],
                    "pooling_layer": pooling["pooling_layer"],
                    "max_length": config.max_length,
                    "train_pairs": len(fit_pairs),
                    "config": json.loads(json.dumps(config.to_dict(), default=str)),
                },
            ).save(out)
        with timer("evaluate"):
            extra = {"train_pairs": len(fit_pairs), "validation_pairs": len(val_pairs),
                     "train_seconds": round(train_seconds, 1)}  # fmt: skip
            record_held_out_accuracy(out, held_pairs, extra, progress)
        update_held_out(out, {"stage_seconds": timer.seconds})
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        if cache is not None and not config.feature_cache:
            shutil.rmtree(out / FEATURE_CACHE, ignore_errors=True)
    progress(f"classifier: time per stage: {timer.line()}")
    progress(f"saved classifier reward model to {out} ({time.perf_counter() - start:.0f}s)")
    return out


def _train_with_reward_trainer(
    config: ClassifierRewardConfig,
    model: Any,
    tokenizer: Any,
    columns: dict[str, list],
    val_columns: dict[str, list] | None,
    cache: Any,
    timer: StageTimer,
    progress: Callable[[str], None],
) -> Any:
    """RewardTrainer on the whole model, LoRA, or the top blocks fed from ``cache``; returns the trained model."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RewardTrainer

    out = Path(config.output_dir)
    checkpoints = out / CHECKPOINTS
    args = dataclasses.replace(config, output_dir=str(checkpoints))
    args.remove_unused_columns = False
    callbacks = []
    if val_columns:
        args.eval_strategy = "steps"
        args.eval_steps = config.save_steps
        args.load_best_model_at_end = True
        args.metric_for_best_model = "eval_loss"
        args.greater_is_better = False
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    kwargs: dict[str, Any] = {}
    skip = None
    trainer_cls = RewardTrainer
    if cache is not None:
        from pluralign.models.frozen_layers import SkipLowerBlocks

        skip = SkipLowerBlocks(model, int(config.trainable_layers))
        trainer_cls = _cached_trainer_class()
        kwargs["data_collator"] = _cached_collator(cache, tokenizer.pad_token_id)
    else:
        kwargs["peft_config"] = lora_for(model, config)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        eval_dataset=Dataset.from_dict(val_columns) if val_columns else None,
        processing_class=tokenizer,
        callbacks=callbacks or None,
        **kwargs,
    )
    if skip is not None:
        trainer.skip = skip
    use_progress_lines(trainer, progress, prefix="classifier: ")
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    check_same_run(checkpoints, config, resuming=bool(last))
    if last:
        progress(f"classifier: resuming from {last}")
    with timer("train"):
        if skip is not None:
            with skip:
                trainer.train(resume_from_checkpoint=last)
        else:
            trainer.train(resume_from_checkpoint=last)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    trainer.accelerator.wait_for_everyone()
    return trained


RUN_FILE = "run.json"
# what a checkpoint's weights and optimizer state depend on: resuming under other values cannot work
RUN_KEYS = ("model_name_or_path", "trainable_layers", "use_peft", "lora_r", "lora_target_modules", "max_length",
            "use_chat_template", "seed", "eval_fraction", "validation_fraction", "dataset", "max_pairs", "pooling",
            "pooling_layer")  # fmt: skip


def check_same_run(checkpoints: Path, config: ClassifierRewardConfig, resuming: bool) -> None:
    """Record the settings of a run beside its checkpoints; a rerun with other settings is refused in one
    line instead of failing deep inside the optimizer when it loads the old state."""
    now = {k: getattr(config, k, None) for k in RUN_KEYS}
    path = checkpoints / RUN_FILE
    if resuming and path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in RUN_KEYS if k in before and before[k] != json.loads(json.dumps(now[k], default=str))]
        if changed:
            raise ConfigError(
                f"{checkpoints} holds an unfinished run with other settings ({', '.join(changed)}); "
                "delete that folder to start afresh, or use another --output_dir"
            )
    if is_main_process():
        checkpoints.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(now, default=str, indent=2))


def run(argv: Sequence[str]) -> int:
    from pluralign.config import parse_config

    config = parse_config(ClassifierRewardConfig, argv, prog="pluralign train reward-model --type classifier")
    train_classifier(config)
    return 0

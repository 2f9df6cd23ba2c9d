"""RiC training: score -> offline SFT on reward-tagged prompts -> online MORS iterations -> model dir.

Each stage records its completion in ``output_dir/ric_state.json`` and writes what it computed to disk
(scores in a SQLite cache, generations chunk by chunk, trainer checkpoints), so rerunning the same
command resumes at the first unfinished step and rescoring is never needed. Works unchanged under
``accelerate launch``: generation is split between processes, scoring runs on the main process.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.jsonl import read_jsonl as _read_jsonl, write_jsonl as _write_jsonl
from pluralign.data.loading import load_any, to_samples
from pluralign.errors import ConfigError
from pluralign.generation.cleaning import Cleaning, keep_mask
from pluralign.generation.vllm import VLLMEngines
from pluralign.methods.ric.bounds import BOUNDS, desired_bounds
from pluralign.methods.ric.buffer import offline_selection
from pluralign.methods.ric.centering import centred, check_centering, prompt_means
from pluralign.methods.ric.config import RiCConfig
from pluralign.methods.ric.mors import mors_accept, mors_thresholds, sample_desired_rewards
from pluralign.methods.ric.policy import model_prompt, trained_on_chat
from pluralign.models.manifest import Manifest
from pluralign.models.state import broadcast, process_state
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache, score_samples
from pluralign.preferences.rewards import MAPPINGS, middle_floor_flags
from pluralign.preferences.tags import TagTemplate, quantile_edges
from pluralign.training.sft import run_sft

Progress = Callable[[str], None]


class _State:
    """Which stages are done (``ric_state.json``); written by the main process only."""

    def __init__(self, path: Path, is_main: bool) -> None:
        self.path, self.is_main = path, is_main
        self.done: list[str] = json.loads(path.read_text())["done"] if path.is_file() else []

    def __contains__(self, stage: str) -> bool:
        return stage in self.done

    def mark(self, stage: str) -> None:
        if stage not in self.done:
            self.done.append(stage)
        if self.is_main:
            self.path.write_text(json.dumps({"done": self.done}, indent=2))


def tagged_samples(
    samples: Sequence[dict], z: np.ndarray, names: Sequence[str], template: TagTemplate, tokenizer: Any = None
) -> list[dict]:
    """Prompt-completion samples whose prompts carry the samples' own (z-scored) rewards, tagged exactly as
    the policy tags a prompt at inference (:func:`pluralign.methods.ric.policy.model_prompt`)."""
    return [
        {"prompt": tag(template, tokenizer, s["prompt"], names, z[i]), "completion": s["response"]}
        for i, s in enumerate(samples)
    ]


def tag(template: TagTemplate, tokenizer: Any, prompt: Any, names: Sequence[str], values: Any) -> Any:
    """One training or online prompt with its tags (conversational prompts rendered first when the tags open
    the assistant's turn)."""
    if tokenizer is not None:
        prompt = model_prompt(tokenizer, template, prompt)
    return template.apply(prompt, names, values)


def validate(config: RiCConfig) -> None:
    if not config.model_name_or_path:
        raise ConfigError("model_name_or_path is required: the starting (SFT) model, a folder or hub id")
    if not config.dataset:
        raise ConfigError("dataset is required: a hub id or a local jsonl/json/parquet/csv file")
    if not config.objective:
        raise ConfigError("no objectives: pass --objective NAME (repeatable) or 'objective:' in the config")
    if config.mapping not in MAPPINGS:
        raise ConfigError(f"mapping {config.mapping!r} is not one of {', '.join(MAPPINGS)}")
    if config.reward_bounds not in BOUNDS:
        raise ConfigError(f"reward_bounds {config.reward_bounds!r} is not one of {', '.join(BOUNDS)}")
    if config.tag_levels == 1 or config.tag_levels < 0:
        raise ConfigError(f"tag_levels must be 0 (z-score tags) or at least 2 (quantile levels), got {config.tag_levels}")
    check_centering(config.center_rewards)
    if not 0 < config.online_quantile < 1:
        raise ConfigError(f"online_quantile must be in (0, 1), got {config.online_quantile}")


def train_ric(config: RiCConfig, progress: Progress | None = print, callbacks: Sequence | None = None) -> Path:
    """Run (or resume) the whole RiC pipeline; returns ``config.output_dir`` holding the trained model.

    ``callbacks`` (🤗 TrainerCallback) go to every SFT stage's trainer, offline and online.
    """
    validate(config)
    log = progress or (lambda _msg: None)
    state_acc = process_state()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out / "ric_state.json", state_acc.is_main_process)
    objectives = ObjectiveSet.from_specs(config.objective)
    middle_floor_flags(objectives.names, config.floor_at_middle)  # an unknown name fails before any work
    template = TagTemplate(
        tag_format=config.tag_format,
        separator=config.tag_separator,
        response_marker=config.response_marker,
        position=config.tag_position,
    )
    tokenizer = _tokenizer(config)

    # 1. data and offline scores (cached; statistics fitted on all responses, chosen and rejected)
    samples = to_samples(
        load_any(config.dataset, split=config.dataset_split),
        prompt_column=config.prompt_column,
        response_column=config.response_column,
        response_marker=config.response_marker,
    )
    if config.max_samples:
        samples = samples[: config.max_samples]
    cache_path = out / "score_cache.sqlite"
    t = time.time()  # every process scores its share of the rows; the main process writes the cache
    scores = score_samples(samples, objectives, ScoreCache(cache_path), chunk_size=config.score_batch_size)
    if state_acc.is_main_process:
        objectives.fit_stats(scores)
        objectives.save(out / "objectives.json")
        log(f"ric: scored {len(samples)} samples with {objectives.names} in {time.time() - t:.1f}s")
    state_acc.wait_for_everyone()
    objectives = ObjectiveSet.load(out / "objectives.json")
    scores = score_samples(samples, objectives, ScoreCache(cache_path))  # all cached now
    z = objectives.zscores(scores)
    data_bounds = objectives.z_bounds()
    centres = None
    if config.center_rewards == "prompt":
        centres = prompt_means([s["prompt"] for s in samples], z)
        z = centred([s["prompt"] for s in samples], z, centres)
        data_bounds = (z.min(axis=0), z.max(axis=0))
    low, high = desired_bounds(config.reward_bounds, *data_bounds, config.online_low, config.online_high)
    if config.tag_levels:
        template.level_edges = {n: quantile_edges(z[:, i], config.tag_levels) for i, n in enumerate(objectives.names)}
    state.mark("score")

    # 2. offline SFT on prompts tagged with each sample's own rewards
    peft = config.peft_config()
    t = time.time()
    model = run_sft(
        config.model_name_or_path,
        tagged_samples(samples, z, objectives.names, template, tokenizer),
        config,
        out / "offline",
        peft_config=peft,
        tokenizer=tokenizer,
        callbacks=callbacks,
        progress=log,
    )
    if "offline" not in state:
        log(f"ric: offline SFT done in {time.time() - t:.1f}s")
    state.mark("offline")

    # 3. online MORS iterations (vllm: one engine for the run, asleep while the run scores and trains)
    engines = VLLMEngines() if config.generation_backend == "vllm" else None
    buffer: list[dict] = []
    for it in range(1, config.online_iterations + 1):
        stage = out / f"online_{it}"
        stage.mkdir(exist_ok=True)
        t = time.time()
        generated = _online_generate(
            config, model, tokenizer, samples, objectives, template, stage, it, log, low, high, engines
        )
        generated = _drop_degenerate(generated, config, log, it)
        if broadcast(not (stage / "buffer.jsonl").is_file()):
            gen_scores = score_samples(
                generated, objectives, ScoreCache(cache_path), chunk_size=config.score_batch_size
            )
        if state_acc.is_main_process and not (stage / "buffer.jsonl").is_file():
            gz = objectives.zscores(gen_scores)  # hindsight relabelling with the OFFLINE statistics
            if centres is not None:  # and the offline responses' per-prompt means
                gz = centred([g["prompt"] for g in generated], gz, centres)
            thr = mors_thresholds(gz, config.online_quantile)
            keep = mors_accept(gz, thr)
            accepted = [
                {"prompt": g["prompt"], "response": g["response"], "z": gz[i].tolist()}
                for i, g in enumerate(generated)
                if keep[i]
            ]
            _write_jsonl(stage / "accepted.jsonl", accepted)
            # the offline part: filtered by the OFFLINE data's own quantiles, a fresh subset per iteration
            chosen, offline_thr = offline_selection(
                z, config.online_quantile, config.online_offline_samples, np.random.default_rng(config.seed + it)
            )
            offline_rows = [
                {"prompt": samples[i]["prompt"], "response": samples[i]["response"], "z": z[i].tolist()} for i in chosen
            ]
            previous = [r for j in range(1, it) for r in _read_jsonl(out / f"online_{j}" / "accepted.jsonl")]
            _write_jsonl(stage / "buffer.jsonl", previous + accepted + offline_rows)
            log(
                f"ric: online {it}: {len(generated)} generations scored, {int(keep.sum())} kept by MORS "
                f"(thresholds {np.round(thr, 2).tolist()}; offline {np.round(offline_thr, 2).tolist()}), buffer {len(previous) + len(accepted) + len(offline_rows)}"
            )
        state_acc.wait_for_everyone()
        buffer = _read_jsonl(stage / "buffer.jsonl")
        bz = np.array([r["z"] for r in buffer])
        model = run_sft(
            str(model),
            tagged_samples(buffer, bz, objectives.names, template, tokenizer),
            config,
            stage / "sft",
            tokenizer=tokenizer,
            callbacks=callbacks,
            progress=log,
            learning_rate=config.online_learning_rate,
            lr_scheduler_type="constant",
            num_train_epochs=config.online_epochs,
            max_steps=config.online_max_steps if config.online_max_steps > 0 else -1,
            warmup_steps=0,
        )
        if f"online_{it}" not in state:
            log(f"ric: online iteration {it} done in {time.time() - t:.1f}s")
        state.mark(f"online_{it}")
    if engines is not None:
        engines.close()

    # 4. the model directory: final weights + tokenizer + pluralign.json
    if state_acc.is_main_process:
        chat = trained_on_chat(tokenizer, [s["prompt"] for s in samples])
        _export(Path(model), out, config, objectives, template, low, high, chat)
    state_acc.wait_for_everyone()
    state.mark("export")
    return out


def _tokenizer(config: RiCConfig):
    from pluralign.models.loading import load_tokenizer

    return load_tokenizer(config.model_name_or_path, trust_remote_code=config.trust_remote_code)


def _cleaning(config: RiCConfig) -> Cleaning:
    return Cleaning() if config.clean_generations else Cleaning.off()


def _drop_degenerate(generated: list[dict], config: RiCConfig, log: Progress, it: int) -> list[dict]:
    """Online samples without degenerate responses (reference ``get_clean_data(remove_bad=True)``)."""
    keep = keep_mask([g["response"] for g in generated], _cleaning(config))
    if not all(keep):
        log(f"ric: online {it}: dropped {len(keep) - sum(keep)} degenerate generations (empty or punctuation)")
    return [g for g, k in zip(generated, keep) if k]


def _online_generate(
    config, model, tokenizer, samples, objectives, template, stage: Path, it: int, log, low, high, engines=None
) -> list[dict]:
    """Generate for sampled prompts at sampled desired rewards; chunks are saved as they finish.

    With vllm every chunk goes to the one engine of ``engines`` (:class:`~pluralign.generation.vllm.VLLMEngines`),
    pointed at ``model``, this iteration's weights; it is put to sleep when the chunks are done."""
    import torch

    from pluralign.generation.backends import check_backend
    from pluralign.generation.batched import generate_texts
    from pluralign.generation.precision import use_precision
    from pluralign.models.loading import load_causal_lm

    check_backend(config.generation_backend)

    acc = process_state()
    plan_file = stage / "plan.jsonl"
    if acc.is_main_process and not plan_file.is_file():
        rng = np.random.default_rng(config.seed + 1000 * it)
        # prompts are drawn from the training rows, so a prompt with several responses can come back
        # with other desired rewards
        prompts = [s["prompt"] for s in samples]
        picked = rng.choice(len(prompts), size=min(config.online_prompts, len(prompts)), replace=False)
        desired = sample_desired_rewards(len(picked), low, high, rng)
        _write_jsonl(
            plan_file, [{"i": n, "prompt": prompts[j], "desired": desired[n].tolist()} for n, j in enumerate(picked)]
        )
    acc.wait_for_everyone()
    plan = _read_jsonl(plan_file)
    out_file = stage / f"generations.rank{acc.process_index}.jsonl"
    if out_file.is_file():  # drop a line a kill may have cut short before appending to the file
        _write_jsonl(out_file, _read_jsonl(out_file))
    acc.wait_for_everyone()
    done = {r["i"] for f in stage.glob("generations.rank*.jsonl") for r in _read_jsonl(f)}
    todo = [p for p in plan if p["i"] not in done]
    with acc.split_between_processes(todo) as mine:
        if mine:
            vllm = config.generation_backend == "vllm"  # vllm loads the folder itself
            lm = None if vllm else load_causal_lm(str(model), trust_remote_code=config.trust_remote_code)
            kwargs = dict(
                max_new_tokens=config.online_max_new_tokens,
                do_sample=True,
                top_p=config.online_top_p,
                top_k=config.online_top_k,  # 0: off; transformers would apply its default of 50
                temperature=config.online_temperature,
            )
            step = config.generation_batch_size * 4
            for start in range(0, len(mine), step):
                chunk = mine[start : start + step]
                # a seed per chunk (from its first plan index): the same run samples the same texts,
                # whatever RNG state training left behind
                torch.manual_seed(config.seed + 1000 * it + int(chunk[0]["i"]))
                tagged = [tag(template, tokenizer, p["prompt"], objectives.names, p["desired"]) for p in chunk]
                with use_precision("bf16" if config.bf16 else "fp32"):  # as the stage trains
                    texts = generate_texts(
                        config.generation_backend,
                        lm,
                        tokenizer,
                        tagged,
                        model_dir=model,
                        batch_size=config.generation_batch_size,
                        cleaning=_cleaning(config),
                        engines=engines,
                        **kwargs,
                    )
                rows = "".join(json.dumps({"i": p["i"], "prompt": p["prompt"], "response": t}) + "\n" for p, t in zip(chunk, texts))
                with out_file.open("a") as f:
                    f.write(rows)
                log(
                    f"ric: online {it}: generated {min(start + step, len(mine))}/{len(mine)} on process {acc.process_index}"
                )
    if engines is not None:
        engines.release()  # the GPU goes to scoring and training until the next iteration's generation
    acc.wait_for_everyone()
    rows = {r["i"]: r for f in sorted(stage.glob("generations.rank*.jsonl")) for r in _read_jsonl(f)}
    return [rows[p["i"]] for p in plan if p["i"] in rows]


def _export(
    model_dir: Path, out: Path, config: RiCConfig, objectives: ObjectiveSet, template: TagTemplate, low, high, chat: bool
) -> None:
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.startswith("training_args"):
            shutil.copy2(f, out / f.name)
    Manifest.for_objectives(
        "ric",
        objectives,
        template=template.to_dict(),
        mapping=config.mapping,
        base_model=config.model_name_or_path,
        extra={
            "online_iterations": config.online_iterations,
            "use_peft": config.use_peft,
            "reward_bounds": config.reward_bounds,
            "center_rewards": config.center_rewards,
            "desired_low": [float(x) for x in low],
            "desired_high": [float(x) for x in high],
            # chat: training prompts were chat-rendered, so a plain prompt is read as a user turn (policy.py)
            "prompt_format": "chat" if chat else "text",
            "guidance_scale": config.guidance_scale,
            "guidance_against": config.guidance_against,
            "floor_at_middle": list(config.floor_at_middle),
        },
    ).save(out)

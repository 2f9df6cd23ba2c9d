"""``pluralign demo --world chat|hh``: RiC (and the baselines) on SmolLM2 in a chat world, end to end.

One path for every chat world (:class:`~pluralign.worlds.chat.world.WorldSpec`: ``chat`` relevance vs
sentiment, ``hh`` harmless vs helpful). Stages (each cached in ``work_dir`` / ``OUT`` and resumed on a
rerun): base model conversion, the world's offline data (hh: its reward model first), scores, RiC offline
SFT, RiC online MORS iterations, the other methods (:data:`TRAINERS`: DPO, Rewarded Soups, MOSLIM),
evaluation over the grid beside the base model, samples.md.
Writes OUT/front.json, OUT/pareto.png, OUT/report.html, OUT/samples.md (and OUT/samples_<method>.md for
every other method), OUT/<world>_demo.json (stage times, peak RSS, the objectives' correlation on the
offline data, per-prompt steering, the RL methods' training records), the steerable model in OUT/model/
and each other method in OUT/<method>/.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.objectives.scoring import ScoreCache
from pluralign.preferences.rewards import middle_floor_flags
from pluralign.worlds.chat.moslim import train_moslim_chat
from pluralign.worlds.chat.world import CHAT, LORA_TARGETS, ChatSettings, ChatWorld, WorldSpec, build_chat_world

SAMPLE_WEIGHTS = ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0))
Progress = Callable[[str], None]


def ric_config(world: ChatWorld, output_dir: Path, **overrides: Any):
    """RiC on a chat world: LoRA on q/k/v/o, quantile-level tags opening the assistant's turn, the world's
    online MORS iterations (one by default); ``overrides`` set any RiCConfig field."""
    from pluralign.methods.ric.config import RiCConfig

    s = world.settings
    data = output_dir / "train.jsonl"
    output_dir.mkdir(parents=True, exist_ok=True)
    if not data.is_file():
        data.write_text("".join(json.dumps({"prompt": r["prompt"], "response": r["response"]}) + "\n" for r in world.train))
    cache = output_dir / "score_cache.sqlite"
    if not cache.is_file() and (world.work_dir / "score_cache.sqlite").is_file():
        world_cache = ScoreCache(world.work_dir / "score_cache.sqlite")
        world_cache.copy_to(cache)  # the world's scores: no rescoring
        world_cache.close()
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        model_name_or_path=world.base_model,
        dataset=str(data),
        objective=world.objectives.specs(),
        response_marker=world.response_marker,
        use_peft=True,
        lora_r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_target_modules=list(LORA_TARGETS),
        num_train_epochs=s.offline_epochs,
        learning_rate=s.learning_rate,
        tag_format=s.tag_format,
        tag_levels=s.tag_levels,
        tag_position=s.tag_position,
        center_rewards=s.center_rewards,
        guidance_scale=s.guidance_scale,
        guidance_against=s.guidance_against,
        floor_at_middle=list(s.floor_at_middle),
        bf16=s.precision() == "bf16",
        lr_scheduler_type="cosine",
        warmup_steps=5,
        per_device_train_batch_size=s.batch_size,
        max_length=s.max_length,
        padding_free=True,  # a batch's rows end to end, no padding: same gradients, a third less compute here
        max_steps=s.offline_max_steps,
        online_iterations=s.online_iterations,
        online_prompts=s.online_prompts,
        online_offline_samples=s.online_offline_samples,
        online_learning_rate=s.online_learning_rate,
        online_epochs=1.0,
        online_max_steps=s.online_max_steps,
        online_max_new_tokens=s.max_new_tokens,
        generation_batch_size=s.generation_batch_size,
        logging_steps=10,
        save_steps=20,
        save_total_limit=1,
        disable_tqdm=True,
        activation_checkpointing=False,  # a 135M model on CPU only pays for it
        report_to="none",
        seed=s.seed,
    )
    return RiCConfig(**{**settings, **overrides})


def train_ric_chat(
    world: ChatWorld,
    output_dir: Path,
    progress: Progress | None = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """RiC on the chat world; ``callbacks`` go to every SFT trainer, ``overrides`` to the config."""
    from pluralign.methods.ric.trainer import train_ric

    return train_ric(ric_config(world, Path(output_dir), **overrides), progress=progress, callbacks=callbacks)


def soups_config(world: ChatWorld, output_dir: Path, **overrides: Any):
    """Rewarded Soups on the chat world: one RLOO run with LoRA per objective from the base model."""
    from pluralign.methods.soups.config import SoupsConfig
    from pluralign.models.state import gpu_available
    from pluralign.training.rl import demo_rl_config

    s = world.settings
    chat: dict[str, Any] = {
        "max_steps": s.rl_steps,
        "per_device_train_batch_size": s.rl_batch_size,
        "num_generations": s.rl_generations,
        "learning_rate": s.rl_learning_rate,
        "beta": s.rl_beta,
        "use_peft": True,
        "lora_r": s.lora_r,
        "lora_alpha": s.lora_alpha,
        "lora_target_modules": list(LORA_TARGETS),
        "logging_steps": 5,
        "dataloader_pin_memory": gpu_available(),  # without an accelerator pinning only warns
        "seed": s.seed,
    }
    return demo_rl_config(SoupsConfig, world, output_dir, **{**chat, **overrides})


def train_soups_chat(
    world: ChatWorld,
    output_dir: Path,
    progress: Progress | None = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """Rewarded Soups on the chat world: RLOO (LoRA) on each objective alone, souped by the preference."""
    from pluralign.methods.soups.trainer import train_soups
    from pluralign.training.rl import world_prompts

    config = soups_config(world, Path(output_dir), **overrides)
    return train_soups(config, world.objectives, world_prompts(world), progress or (lambda _: None), callbacks=callbacks)


def dpo_settings(world: ChatWorld) -> dict[str, Any]:
    """The DPO-family settings of a chat world (LoRA r on q/k/v/o, merged when a stage ends): its DPO
    baseline's, and those of SPO's rounds on it (``benchmarks/spo_retention.py --world hh``)."""
    from pluralign.models.state import gpu_available

    s = world.settings
    return dict(
        model_name_or_path=world.base_model,
        use_peft=True,
        lora_r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_target_modules=list(LORA_TARGETS),
        learning_rate=s.dpo_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        per_device_train_batch_size=s.batch_size,
        num_train_epochs=1.0,
        beta=s.dpo_beta,
        dataloader_pin_memory=gpu_available(),  # without an accelerator pinning only warns
        max_length=192,
        logging_steps=5,
        save_steps=10,
        save_total_limit=1,
        activation_checkpointing=False,  # a 135M model on CPU only pays for it
        disable_tqdm=True,
        report_to="none",
        seed=s.seed,
    )


def train_dpo_chat(
    world: ChatWorld,
    output_dir: Path,
    progress: Progress | None = print,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Path:
    """DPO with LoRA (merged at the end) on both objectives' pairs merged: one model for every preference.
    ``overrides`` set config fields; DPO's stages take no callbacks."""
    from pluralign.methods.dpo.trainer import train_dpo
    from pluralign.models.loading import load_tokenizer
    from pluralign.training.dpo_stage import DimensionDPOConfig

    if callbacks:
        raise ConfigError("the chat world's DPO baseline takes no trainer callbacks")
    config = DimensionDPOConfig(**{"output_dir": str(output_dir), **dpo_settings(world), **overrides})
    spec = getattr(world, "spec", None) or CHAT
    pairs = spec.dpo_pairs(world, load_tokenizer(world.base_model))
    return train_dpo(config, pairs, progress)


# every hook: hook(world, out_dir, progress, callbacks=None, **config overrides) -> model dir
TRAINERS = {"ric": train_ric_chat, "dpo": train_dpo_chat, "soups": train_soups_chat, "moslim": train_moslim_chat}
# the steered model of a run goes to DIR/model (shared/DESIGN.md: every world writes it); baselines to DIR/<method>
MODEL_DIRS = {"ric": "model"}


def model_dir(out: Path, method: str) -> Path:
    return Path(out) / MODEL_DIRS.get(method, method)


def parse_methods(spec: str, world: WorldSpec | None = None) -> list[str]:
    world = world or CHAT
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in methods if m not in world.methods]
    if not methods or bad:
        raise ConfigError(f"--method {spec!r}: the {world.name} world trains {', '.join(world.methods)} (comma-separated)")
    return methods


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and finished children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def write_samples(
    out: Path, policy: Any, world: ChatWorld, n_prompts: int = 3, file_name: str = "samples.md", front: Any = None
) -> None:
    """DIR/samples.md: the steered model's responses at w = (1,0), (0.5,0.5), (0,1) for a few held-out prompts.

    With the policy's evaluated ``front`` (whose grid holds those weights) it quotes the very answers the
    front scored, at no extra generation; otherwise it generates them."""
    from pluralign.objectives.relevance import last_user_turn

    prompts = world.eval_prompts[:n_prompts]
    names = world.objectives.names
    texts, scores = quoted_answers(front, n_prompts) if front is not None else (None, None)
    if texts is None:
        texts = {w: policy.generate(prompts, preference=dict(zip(names, w)), **world.generation_kwargs) for w in SAMPLE_WEIGHTS}
        scores = {w: world.objectives.score(prompts, texts[w]) for w in SAMPLE_WEIGHTS}
        scores = {w: [[s[n][i] for n in names] for i in range(len(prompts))] for w, s in scores.items()}
    lines = [f"# Steered samples ({policy.manifest.method}, {world.base_model})", ""]
    lines.append(
        f"Objectives: {', '.join(names)}; held-out prompts; greedy decoding, "
        f"{world.generation_kwargs.get('max_new_tokens', world.settings.max_new_tokens)} new tokens at most."
    )
    for i, p in enumerate(prompts):
        lines += ["", f"## {last_user_turn(p)}", ""]
        for w in SAMPLE_WEIGHTS:
            label = ", ".join(f"{n}={v:g}" for n, v in zip(names, w))
            got = ", ".join(f"{n} {v:+.2f}" for n, v in zip(names, scores[w][i]))
            lines.append(f"- **w = ({label})** [{got}]: {texts[w][i].strip() or '(empty)'}")
    (out / file_name).write_text("\n".join(lines) + "\n")


def quoted_answers(front: Any, n_prompts: int) -> tuple[dict | None, dict | None]:
    """The first ``n_prompts`` answers and their scores at each of SAMPLE_WEIGHTS from an evaluated front
    (the same prompts, in order); (None, None) when its grid lacks one of the weights or kept no texts."""
    texts, scores = {}, {}
    for w in SAMPLE_WEIGHTS:
        g = next((g for g, p in enumerate(front.points) if np.allclose(p["preference"], w)), None)
        if g is None or g >= len(front.prompt_texts):
            return None, None
        texts[w], scores[w] = front.prompt_texts[g][:n_prompts], front.prompt_scores[g][:n_prompts]
    return texts, scores


def training_record(model_dir: Path) -> dict[str, Any] | None:
    """What an RL baseline's training wrote about itself: MOSLIM's ``moslim_run.json`` (with its reward
    model's per-head accuracy), or each Rewarded Soups run's ``pluralign_run.json``; None for the others."""
    model_dir = Path(model_dir)
    if (model_dir / "moslim_run.json").is_file():
        return json.loads((model_dir / "moslim_run.json").read_text())
    runs = {f.parent.name: json.loads(f.read_text()) for f in sorted(model_dir.glob("runs/*/pluralign_run.json"))}
    return runs or None


def run_chat_demo(
    out: str | Path,
    methods: Sequence[str] = ("ric",),
    work_dir: str | Path | None = None,
    seed: int = 0,
    generation: dict[str, Any] | None = None,
    settings: ChatSettings | None = None,
    spec: WorldSpec | None = None,
) -> int:
    """``pluralign demo --world chat|hh``: build the world (``spec``; default the chat world), train the
    methods, evaluate their fronts beside the base model, write the results and ``DIR/<world>_demo.json``.
    Every generation runs in the settings' precision (``ChatSettings.bf16``), as RiC's training does."""
    from pluralign.generation.precision import use_precision

    spec = spec or CHAT
    settings = settings or spec.settings(seed=seed)  # --seed seeds the world's sampling, training and evaluation
    with use_precision(settings.precision()):
        return _run_chat_demo(out, methods, work_dir, seed, generation, settings, spec)


def _run_chat_demo(
    out: str | Path,
    methods: Sequence[str],
    work_dir: str | Path | None,
    seed: int,
    generation: dict[str, Any] | None,
    settings: ChatSettings,
    spec: WorldSpec,
) -> int:
    from pluralign.evaluation.pipeline import evaluate_models, summary_table
    from pluralign.evaluation.steering import steering_summary
    from pluralign.policies import load_policy
    from pluralign.preferences.weights import preference_grid
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # no library deprecation warnings or progress bars among the demo's lines
    name = spec.name
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {msg}", flush=True)

    def stage(label: str, t0: float) -> None:
        stages[label] = round(time.time() - t0, 1)
        progress(f"{name} demo: stage {label} took {stages[label]:.1f}s (peak RSS {peak_rss_mb():.0f} MB)")

    t = time.time()
    progress(f"{name} demo: building the {name} world ({spec.description}; cached after the first run); "
             f"computing in {settings.precision()}")
    world = build_chat_world(Path(work_dir) if work_dir else out / "world", progress=progress, settings=settings, spec=spec)
    stage("world", t)
    for part, seconds in world.build_seconds.items():  # the world's own stages in this run (0 when cached)
        stages[f"world.{part}"] = seconds
    progress(f"{name} demo: {world.objectives.names} correlate {world.correlation:+.3f} on the offline data")
    middle_floor_flags(world.objectives.names, settings.floor_at_middle)  # a wrong name fails before training
    policies, train_seconds = {}, {}
    for method in methods:
        t = time.time()
        progress(f"{name} demo: training {method}")
        trained = TRAINERS[method](world, model_dir(out, method), progress)
        train_seconds[method] = time.time() - t
        stage(f"train_{method}", t)
        # RiC decodes with the world's tag guidance, also when its model was trained before the setting
        guidance = {
            "guidance_scale": settings.guidance_scale,
            "guidance_against": settings.guidance_against,
            "floor_at_middle": list(settings.floor_at_middle),
        }
        policies[method] = load_policy(trained, **(guidance if method == "ric" else {}))
    t = time.time()
    gen = {**world.generation_kwargs, **(generation or {})}
    fronts = evaluate_models(
        policies,
        world.base_model,
        world.eval_prompts,
        world.objectives,
        out,
        train_seconds=train_seconds,
        grid=preference_grid(len(world.objectives), world.settings.grid_points),
        seed=seed,
        title=f"pluralign {name} world: {', '.join(methods)} vs base SmolLM2-135M-Instruct",
        progress=progress,
        range_stats=dict(world.objectives.stats) if spec.range_from_data else None,
        base_name=spec.base_front,
        **gen,
    )
    stage("evaluate", t)
    t = time.time()
    steered = "ric" if "ric" in policies else methods[0]
    evaluated = {f.method: f for f in fronts}
    write_samples(out, policies[steered], world, front=evaluated.get(steered))
    for method in methods:  # every other method's answers to the same prompts, beside it
        if method != steered:
            write_samples(out, policies[method], world, file_name=f"samples_{method}.md", front=evaluated.get(method))
    stage("samples", t)
    steering = steering_summary(fronts, world.objectives.names)
    summary = {
        "world": name,
        "base_model": world.base_model,
        "objectives": world.objectives.names,
        "correlation_on_offline_data": world.correlation,
        "correlation_detail": world.info.get("correlation_detail"),
        **({"reward_model": world.info["reward_model"]} if "reward_model" in world.info else {}),
        "held_out_prompts": len(world.eval_prompts),
        "precision": settings.precision(),
        "methods": list(methods),
        "stage_seconds": stages,
        "total_seconds": round(time.time() - start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "fronts": {
            f.method: {"hypervolume": f.hypervolume, "steerability": f.steerability, "range": f.range} for f in fronts
        },
        "steering": steering,
        "training": {m: r for m in methods if (r := training_record(model_dir(out, m)))},
        "settings": asdict(world.settings),
    }
    (out / f"{name}_demo.json").write_text(json.dumps(summary, indent=2))
    add_to_front_json(out / "front.json", {"steering": steering, "stage_seconds": stages,
                                           "peak_rss_mb": summary["peak_rss_mb"], "world": name})  # fmt: skip
    print(summary_table(fronts, world.objectives.names))
    for method, s in steering.items():
        shares = ", ".join(f"{n} {v:.2f}" if v is not None else f"{n} n/a" for n, v in s["steering_share"].items())
        balanced = s["balanced_vs_base"]
        verdict = "n/a" if balanced is None else ("yes" if balanced["both_at_least_base"] else "no")
        progress(f"{name} demo: {method}: per-prompt steering share {shares}; equal weights >= base on both: {verdict}")
    progress(
        f"{name} demo: done in {summary['total_seconds']:.0f}s, peak RSS {summary['peak_rss_mb']:.0f} MB; wrote "
        f"{out / 'front.json'}, {out / 'pareto.png'}, {out / 'report.html'}, {out / 'samples.md'}, "
        f"{model_dir(out, steered)}"
    )
    return 0


def add_to_front_json(path: Path, keys: dict[str, Any]) -> None:
    """Top-level keys added to a written front.json (its contract allows extra keys)."""
    if path.is_file():
        data = json.loads(path.read_text())
        data.update(keys)
        path.write_text(json.dumps(data, indent=2))


def world_spec(name: str) -> WorldSpec:
    """The chat world named ``name``: ``chat`` (relevance vs sentiment) or ``hh`` (harmless vs helpful)."""
    from pluralign.worlds.chat.hh import HH

    specs = {CHAT.name: CHAT, HH.name: HH}
    if name not in specs:
        raise ConfigError(f"unknown chat world {name!r}; use {' or '.join(specs)}")
    return specs[name]

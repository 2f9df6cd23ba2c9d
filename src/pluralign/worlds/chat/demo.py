"""``pluralign demo --world chat``: RiC (and the DPO baseline) on SmolLM2 in the chat world, end to end.

Stages (each cached in ``work_dir`` / ``OUT`` and resumed on a rerun): base model conversion, base
samples, scores, RiC offline SFT, RiC online MORS iteration, DPO, evaluation over the grid, samples.md.
Writes OUT/front.json, OUT/pareto.png, OUT/report.html, OUT/samples.md, OUT/chat_demo.json (stage
times, peak RSS, the objectives' correlation on the base samples) and OUT/<method>/ (the models).
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError
from pluralign.worlds.chat.world import LORA_TARGETS, ChatSettings, ChatWorld, build_chat_world

CHAT_METHODS = ("ric", "dpo", "soups")
SAMPLE_WEIGHTS = ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0))
Progress = Callable[[str], None]


def ric_config(world: ChatWorld, output_dir: Path, **overrides: Any):
    """RiC on the chat world: LoRA on q/k/v/o, quantile-level tags opening the assistant's turn, one online iteration;
    ``overrides`` set any RiCConfig field."""
    from pluralign.methods.ric.config import RiCConfig

    s = world.settings
    data = output_dir / "train.jsonl"
    output_dir.mkdir(parents=True, exist_ok=True)
    if not data.is_file():
        data.write_text("".join(json.dumps({"prompt": r["prompt"], "response": r["response"]}) + "\n" for r in world.train))
    cache = output_dir / "score_cache.sqlite"
    if not cache.is_file() and (world.work_dir / "score_cache.sqlite").is_file():
        shutil.copy2(world.work_dir / "score_cache.sqlite", cache)  # the world's scores: no rescoring
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
        lr_scheduler_type="cosine",
        warmup_steps=5,
        per_device_train_batch_size=s.batch_size,
        max_length=192,
        online_iterations=1,
        online_prompts=s.online_prompts,
        online_offline_samples=s.online_offline_samples,
        online_learning_rate=s.online_learning_rate,
        online_epochs=1.0,
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
    from pluralign.training.rl import demo_rl_config
    from pluralign.training.state import gpu_available

    s = world.settings
    chat: dict[str, Any] = {
        "max_steps": s.rl_steps,
        "per_device_train_batch_size": s.rl_batch_size,
        "num_generations": s.rl_generations,
        "learning_rate": s.rl_learning_rate,
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
    from pluralign.training.dpo_stage import DimensionDPOConfig
    from pluralign.training.state import gpu_available

    s = world.settings
    if callbacks:
        raise ConfigError("the chat world's DPO baseline takes no trainer callbacks")
    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
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
    config = DimensionDPOConfig(**{**settings, **overrides})
    pairs = {name: world.pairs(name, s.dpo_pairs) for name in world.objectives.names}
    return train_dpo(config, pairs, progress)


TRAINERS = {"ric": train_ric_chat, "dpo": train_dpo_chat, "soups": train_soups_chat}


def parse_methods(spec: str) -> list[str]:
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in methods if m not in CHAT_METHODS]
    if not methods or bad:
        raise ConfigError(f"--method {spec!r}: the chat world trains {', '.join(CHAT_METHODS)} (comma-separated)")
    return methods


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and finished children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def write_samples(out: Path, policy: Any, world: ChatWorld, n_prompts: int = 3) -> None:
    """DIR/samples.md: the steered model's responses at w = (1,0), (0.5,0.5), (0,1) for a few prompts."""
    from pluralign.objectives.relevance import last_user_turn

    prompts = world.eval_prompts[:n_prompts]
    names = world.objectives.names
    texts = {w: policy.generate(prompts, preference=dict(zip(names, w)), **world.generation_kwargs) for w in SAMPLE_WEIGHTS}
    lines = [f"# Steered samples ({policy.manifest.method}, {world.base_model})", ""]
    lines.append(f"Objectives: {', '.join(names)}; greedy decoding, {world.settings.max_new_tokens} new tokens at most.")
    for i, p in enumerate(prompts):
        lines += ["", f"## {last_user_turn(p)}", ""]
        scores = world.objectives.score([p] * len(SAMPLE_WEIGHTS), [texts[w][i] for w in SAMPLE_WEIGHTS])
        for j, w in enumerate(SAMPLE_WEIGHTS):
            label = ", ".join(f"{n}={v:g}" for n, v in zip(names, w))
            got = ", ".join(f"{n} {scores[n][j]:+.2f}" for n in names)
            lines.append(f"- **w = ({label})** [{got}]: {texts[w][i].strip() or '(empty)'}")
    (out / "samples.md").write_text("\n".join(lines) + "\n")


def run_chat_demo(
    out: str | Path,
    methods: Sequence[str] = ("ric",),
    work_dir: str | Path | None = None,
    seed: int = 0,
    generation: dict[str, Any] | None = None,
    settings: ChatSettings | None = None,
) -> int:
    from pluralign.evaluation.pipeline import evaluate_models, summary_table
    from pluralign.generation.policy import load_policy
    from pluralign.preferences.weights import preference_grid
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # no library deprecation warnings or progress bars among the demo's lines
    settings = settings or ChatSettings(seed=seed)  # --seed seeds the world's sampling, training and evaluation
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {msg}", flush=True)

    def stage(name: str, t0: float) -> None:
        stages[name] = round(time.time() - t0, 1)
        progress(f"chat demo: stage {name} took {stages[name]:.1f}s (peak RSS {peak_rss_mb():.0f} MB)")

    t = time.time()
    progress("chat demo: building the chat world (SmolLM2 samples on HH prompts; cached after the first run)")
    world = build_chat_world(Path(work_dir) if work_dir else out / "world", progress=progress, settings=settings)
    stage("world", t)
    progress(f"chat demo: {world.objectives.names} correlate {world.correlation:+.3f} on the base model's samples")
    policies, train_seconds = {}, {}
    for method in methods:
        t = time.time()
        progress(f"chat demo: training {method}")
        model_dir = TRAINERS[method](world, out / method, progress)
        train_seconds[method] = time.time() - t
        stage(f"train_{method}", t)
        policies[method] = load_policy(model_dir)
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
        title=f"pluralign chat world: {', '.join(methods)} vs base SmolLM2-135M-Instruct",
        progress=progress,
        **gen,
    )
    stage("evaluate", t)
    t = time.time()
    steered = "ric" if "ric" in policies else methods[0]
    write_samples(out, policies[steered], world)
    stage("samples", t)
    summary = {
        "base_model": world.base_model,
        "objectives": world.objectives.names,
        "correlation_on_base_samples": world.correlation,
        "methods": list(methods),
        "stage_seconds": stages,
        "total_seconds": round(time.time() - start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "fronts": {f.method: {"hypervolume": f.hypervolume, "steerability": f.steerability} for f in fronts},
    }
    (out / "chat_demo.json").write_text(json.dumps(summary, indent=2))
    print(summary_table(fronts, world.objectives.names))
    progress(
        f"chat demo: done in {summary['total_seconds']:.0f}s, peak RSS {summary['peak_rss_mb']:.0f} MB; wrote "
        f"{out / 'front.json'}, {out / 'pareto.png'}, {out / 'report.html'}, {out / 'samples.md'}"
    )
    return 0

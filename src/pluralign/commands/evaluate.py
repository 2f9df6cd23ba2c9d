"""``pluralign evaluate --model DIR --out DIR``: the model's Pareto front over a preference grid.

Writes front.json, pareto.png and report.html. The SFT start (``--baseline``, default the model's
base_model from pluralign.json) is evaluated too and sets the hypervolume's normalisation.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pluralign.config import add_generation_flags, generation_kwargs, parse_args
from pluralign.errors import ConfigError, DataError

# pure top-p (top_k 0: transformers' default top-k of 50 off), as the RiC reference's evaluation samples
SAMPLING = {"max_new_tokens": 64, "do_sample": True, "top_p": 0.9, "top_k": 0, "temperature": 0.7}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pluralign evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="a trained pluralign model dir")
    p.add_argument("--out", required=True, help="folder for front.json, pareto.png, report.html")
    p.add_argument("--dataset", default=None, help="prompts: hub id or local file with a prompt column")
    p.add_argument("--prompt_column", default="prompt")
    p.add_argument("--num_prompts", type=int, default=64)
    p.add_argument("--baseline", default=None, help="the SFT model (default: base_model in pluralign.json)")
    p.add_argument("--objective", action="append", default=None, help="objectives to score (default: the model's)")
    p.add_argument(
        "--grid",
        default="lattice",
        help="preferences to evaluate: lattice (default) | ric13 (RiC's 13 fixed points, K=3) | a points file "
        "(JSON list of weight lists, or one comma-separated point per line)",
    )
    p.add_argument("--grid_points", type=int, default=None, help="simplex lattice resolution (K=2: 10 -> 11 points)")
    p.add_argument("--reference_z", type=float, default=-3.0, help="hypervolume reference point, z-units")
    p.add_argument("--num_inference_steps", type=int, default=None, help="image models: sampling steps")
    p.add_argument("--guidance_scale", type=float, default=None, help="image models: classifier-free guidance")
    p.add_argument("--generation_backend", default="transformers", help="transformers | continuous | vllm")
    add_generation_flags(p)
    return p


def run(argv: Sequence[str]) -> int:
    from pluralign.data.loading import load_prompts
    from pluralign.evaluation.pipeline import evaluate_models, summary_table
    from pluralign.generation.backends import check_backend, use_backend
    from pluralign.generation.policy_backends import with_backend
    from pluralign.generation.prompts import as_chat
    from pluralign.models.state import init_processes
    from pluralign.objectives import ObjectiveSet, ObjectiveStats
    from pluralign.policies import load_policy
    from pluralign.training.seeding import seed_everything

    args = parse_args(build_parser(), argv)
    seed_everything(args.seed)
    rank, _ = init_processes()  # under accelerate launch each process evaluates a share of every grid
    backend = check_backend(args.generation_backend)
    policy = load_policy(args.model)
    if backend == "vllm":  # the policy's steered prompts go to a vLLM engine; the SFT baseline stays on transformers
        policy = with_backend(policy, backend)
    objectives = ObjectiveSet.from_specs(args.objective or policy.manifest.objective_specs)
    baseline = args.baseline or policy.manifest.base_model
    if not baseline:
        raise ConfigError("no baseline SFT model: pass --baseline DIR")
    if not args.dataset:
        raise DataError("no prompts: pass --dataset FILE with a prompt column")
    prompts = load_prompts(args.dataset, args.prompt_column, args.num_prompts)
    if getattr(policy, "modality", "text") == "image":
        return _evaluate_images(policy, baseline, prompts, objectives, args)
    prompts = as_chat(prompts, getattr(policy, "tokenizer", None), args.chat, getattr(policy, "chat_trained", False))
    gen = generation_kwargs(args, SAMPLING)
    with use_backend("transformers" if backend == "vllm" else backend):
        fronts = evaluate_models(
            {policy.method: policy},
            baseline,
            prompts,
            objectives,
            args.out,
            **_front_settings(args, len(objectives)),
            range_stats=_training_stats(policy.manifest.stats, objectives.names, ObjectiveStats),
            **gen,
        )
    if rank != 0:
        return 0
    print(summary_table(fronts, objectives.names))
    print(f"pluralign: wrote {Path(args.out) / 'front.json'}, pareto.png, report.html")
    return 0


def _front_settings(args: argparse.Namespace, k: int) -> dict:
    """The grid, reference point, seed and title every front of ``pluralign evaluate`` is measured with."""
    from pluralign.evaluation.grids import resolve_grid

    return {
        "grid": resolve_grid(args.grid, k, args.grid_points),
        "reference_z": args.reference_z,
        "seed": args.seed,
        "title": f"pluralign evaluate: {Path(args.model).name}",
    }


def _training_stats(stats: dict, names: Sequence[str], cls) -> dict:
    """The model's training-data statistics (the range's unit) for the objectives it has them for."""
    out = {}
    for n in names:
        try:
            out[n] = cls(**stats[n])
        except (KeyError, TypeError):
            continue
    return out


def _evaluate_images(policy, baseline: str, prompts, objectives, args) -> int:
    from pluralign.evaluation.images import evaluate_image_models
    from pluralign.evaluation.pipeline import summary_table
    from pluralign.models.diffusion import TextToImage

    gen = {k: getattr(args, k) for k in ("num_inference_steps", "guidance_scale") if getattr(args, k) is not None}
    fronts = evaluate_image_models(
        {"ric": policy},
        TextToImage.load(baseline, device=None),
        [str(p) for p in prompts],
        objectives,
        args.out,
        **_front_settings(args, len(objectives)),
        **gen,
    )
    print(summary_table(fronts, objectives.names))
    print(f"pluralign: wrote {Path(args.out) / 'front.json'}, pareto.png, report.html, samples/")
    return 0

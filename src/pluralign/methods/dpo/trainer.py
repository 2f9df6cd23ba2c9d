"""``pluralign train dpo``: one DPO model on every dimension's pairs merged (the single-model baseline)."""

from __future__ import annotations

from pathlib import Path

from pluralign.data.dimension_pairs import Pairs
from pluralign.models.manifest import Manifest
from pluralign.training.dpo_stage import DimensionDPOConfig, Progress, load_pairs, run_dpo_stage, say


def train_dpo(
    config: DimensionDPOConfig, dimension_pairs: dict[str, Pairs] | None = None, progress: Progress | None = print
) -> Path:
    """DPO from the starting model on the pairs of every dimension merged (the trainer shuffles them)."""
    from pluralign.models.loading import load_tokenizer

    model = config.require_model()
    dimension_pairs = dimension_pairs if dimension_pairs is not None else load_pairs(config)
    pairs = [p for dim_pairs in dimension_pairs.values() for p in dim_pairs]
    dims = list(dimension_pairs)
    say(progress, f"dpo: {len(pairs)} pairs from {', '.join(dims)}")
    manifest = Manifest(
        method="dpo",
        objectives=dims,
        base_model=model,
        extra={"beta": config.beta, "dimensions": {d: len(p) for d, p in dimension_pairs.items()}},
    )
    tokenizer = load_tokenizer(model, trust_remote_code=config.trust_remote_code)
    return run_dpo_stage(model, pairs, config, config.output_dir, tokenizer, manifest)

"""SPO (METHODS.md §3): one DPO round per dimension, each keeping the earlier rounds' implicit rewards.

Round 1 is DPO from the starting model pi_0. Round n starts from, and is referenced to, pi_{n-1} and
trains on dimension n's pairs with

    L_n = -log sigmoid(beta_n * delta_n - sum_{j<n} alpha_j * beta_j * [h_j(y_w) - h_j(y_l)]),
    h_j(y) = log pi_j(y) - log pi_{j-1}(y)        (round j's implicit reward, over beta_j)

which is :class:`MarginDPOTrainer` with that sum as the per-pair margin. The margin needs pi_0..pi_{n-1}
on dimension n's pairs: each is loaded alone, its log-probabilities are cached per pair
(``logps.sqlite``) and it is freed before training, so at most one model besides the policy is ever in
memory. pi_{n-1}'s are also the round's reference log-probabilities, so TRL's reference pass is skipped. Each round is saved as ``round_<n>_<dimension>/`` (a loadable model dir); a rerun skips the
finished rounds and resumes the first unfinished one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.dimension_pairs import Pairs
from pluralign.errors import ConfigError
from pluralign.methods.spo.config import SPOConfig
from pluralign.models.manifest import Manifest
from pluralign.models.state import is_main_process, wait_for_everyone
from pluralign.objectives.scoring import ScoreCache
from pluralign.training.dpo_stage import Progress, load_pairs, run_dpo_stage, say, stage_is_done
from pluralign.training.pair_logps import pair_logps

LOGPS_CACHE = "logps.sqlite"


def round_dir_name(n: int, dimension: str) -> str:
    return f"round_{n}_{re.sub(r'[^A-Za-z0-9_.-]+', '-', dimension)}"


def spo_margins(
    models: Sequence[str | Path],
    pairs: Pairs,
    betas: Sequence[float],
    alphas: Sequence[float],
    args: Any,
    tokenizer: Any,
    cache: ScoreCache | None = None,
) -> np.ndarray:
    """Per-pair margin of round n = len(models): sum_{j<n} alpha_j beta_j [h_j(y_w) - h_j(y_l)].

    ``models`` is [pi_0, ..., pi_{n-1}]; log-probabilities come from (and go to) ``cache``.
    """
    margins = np.zeros(len(pairs))
    logps: dict[int, np.ndarray] = {}

    def lp(j: int) -> np.ndarray:
        if j not in logps:
            logps[j] = pair_logps(models[j], pairs, args, tokenizer, cache)
        return logps[j]

    for j in range(1, len(models)):
        if alphas[j - 1] == 0:
            continue
        h = lp(j) - lp(j - 1)  # (N, 2): implicit reward / beta_j of chosen and rejected
        margins += alphas[j - 1] * betas[j - 1] * (h[:, 0] - h[:, 1])
    return margins


def describe_margins(margins: np.ndarray) -> str:
    """One line on the margin's scale. It is in the units of the loss's logit beta_n * delta: a margin much
    smaller than the logits the round itself reaches (TRL logs them as ``rewards/margins``) barely changes
    the round; one far larger makes the pairs the earlier rounds rank the other way all but drop out of it."""
    m = margins[np.isfinite(margins)]
    if not m.size:
        return "spo: margin: no pair has one"
    return (
        f"spo: margin (alpha-weighted implicit rewards of the earlier rounds): mean |m| {np.abs(m).mean():.3f}, "
        f"{np.mean(m < 0):.0%} of pairs below 0 (ranked the other way by the earlier rounds: down-weighted)"
    )


def check_finished_round(round_dir: Path, n: int, dimension: str, beta: float, alphas: Sequence[float]) -> None:
    """A finished round must have been trained with the settings asked for now, or resuming would mix runs."""
    extra = Manifest.load(round_dir).extra
    asked = {"dimension": dimension, "beta": beta, "alpha": list(alphas)}
    for key, value in asked.items():
        if extra.get(key) != value:
            raise ConfigError(
                f"{round_dir} (round {n}) was trained with {key}={extra.get(key)!r}, not {value!r}; "
                "use a new --output_dir or the same settings to resume"
            )


def train_spo(
    config: SPOConfig, dimension_pairs: dict[str, Pairs] | None = None, progress: Progress | None = print
) -> Path:
    """Run (or resume) every SPO round; returns the output dir, whose pluralign.json points at the last round."""
    from pluralign.models.loading import load_tokenizer

    start = config.require_model()
    dimension_pairs = dimension_pairs if dimension_pairs is not None else load_pairs(config)
    dims = list(dimension_pairs)
    betas, alphas = config.betas(len(dims)), config.alphas(len(dims))
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(start, trust_remote_code=config.trust_remote_code)
    cache = ScoreCache(out / LOGPS_CACHE)
    models: list[str] = [start]
    rounds = []
    try:
        for n, dim in enumerate(dims, start=1):
            round_dir = out / round_dir_name(n, dim)
            pairs = dimension_pairs[dim]
            if stage_is_done(round_dir):
                check_finished_round(round_dir, n, dim, betas[n - 1], alphas[: n - 1])
                say(progress, f"spo: round {n}/{len(dims)} ({dim}) already trained, skipped")
            else:
                say(progress, f"spo: round {n}/{len(dims)} on {dim!r}: {len(pairs)} pairs, reference {models[-1]}")
                margins = spo_margins(models, pairs, betas, alphas, config, tokenizer, cache)
                ref_logps = None
                if any(alphas[: n - 1]):
                    say(progress, describe_margins(margins))
                    # the margin scored pi_{n-1}, this round's reference, on these pairs: the cache has it
                    ref_logps = pair_logps(models[-1], pairs, config, tokenizer, cache)
                manifest = Manifest(
                    method="spo",
                    objectives=dims[:n],
                    base_model=start,
                    extra={
                        "round": n,
                        "dimension": dim,
                        "beta": betas[n - 1],
                        "alpha": alphas[: n - 1],
                        "reference": models[-1],
                        "pairs": len(pairs),
                    },
                )
                run_dpo_stage(models[-1], pairs, config, round_dir, tokenizer, manifest, margins, betas[n - 1], ref_logps)
            models.append(str(round_dir))
            rounds.append({"round": n, "dimension": dim, "dir": round_dir.name, "beta": betas[n - 1]})
    finally:
        cache.close()
    if is_main_process():
        Manifest(
            method="spo",
            objectives=dims,
            base_model=start,
            extra={"rounds": rounds, "final": rounds[-1]["dir"], "alpha": alphas[: len(dims) - 1]},
        ).save(out)
    wait_for_everyone()
    say(progress, f"spo: {len(dims)} rounds done; final model {out / rounds[-1]['dir']}")
    return out

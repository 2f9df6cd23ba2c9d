"""The compute a front costs: a FLOP model, quality-against-compute curves, the matched-quality figure.

FLOP model (the usual transformer approximation, attention's sequence-length term left out):

- a token a model is **trained** on costs ``6 N`` (forward ``2 N``, backward ``4 N``);
- a token a model only runs **forward** on (generated, prefilled, scored by a reward model, or passed
  through RLOO's reference model) costs ``2 N``;
- with **LoRA** (``trainable`` parameters on top of a frozen base of ``N``), backward still propagates
  activation gradients through the frozen weights (``2 N``) but computes weight gradients for the
  adapters only (``2 N_trainable``): a trained token costs ``4 N + 6 N_trainable``.

``N`` is the parameter count of each model involved, reward models included; rule-based scorers
(VADER, word counts) have ``N = 0``: their cost shows in wall time only.

A curve is a list of :class:`CurvePoint` (cumulative seconds, cumulative FLOPs, hypervolume) in
training order; :func:`matched` reads the matched-quality block of front.json off two curves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

TRAIN_FLOPS_PER_PARAM = 6.0
FORWARD_FLOPS_PER_PARAM = 2.0


def train_flops(n_params: float, tokens: float, trainable: float | None = None) -> float:
    """FLOPs of training on ``tokens`` tokens: ``6 N`` each, or ``4 N + 6 N_trainable`` with a frozen base."""
    if trainable is None or trainable >= n_params:
        return TRAIN_FLOPS_PER_PARAM * n_params * tokens
    return (4.0 * n_params + 6.0 * trainable) * tokens


def forward_flops(n_params: float, tokens: float) -> float:
    """FLOPs of running a model forward on ``tokens`` tokens (generation, scoring, a reference model)."""
    return FORWARD_FLOPS_PER_PARAM * n_params * tokens


def count_parameters(model: Any) -> int:
    """Parameters of a torch module (all of them, trainable or not)."""
    return int(sum(p.numel() for p in model.parameters()))


def _modules_in(obj: Any, depth: int = 2) -> list[Any]:
    """torch modules an object holds in its attributes (and theirs, ``depth`` levels down); loads nothing."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return [obj]
    if depth == 0 or not hasattr(obj, "__dict__"):
        return []
    found = []
    for value in vars(obj).values():
        found.extend(_modules_in(value, depth - 1))
    return found


def reward_model_parameters(objectives: Iterable[Any]) -> int:
    """Summed parameters of the objectives that are neural reward models (0 for rule-based scorers).

    An objective counts with its ``num_parameters`` attribute if it has one, else with the torch modules it
    holds once loaded (an HF reward model after its first call, a trained reward-model directory); score
    the objectives before counting. Nothing is loaded here.
    """
    total = 0
    for obj in objectives:
        n = getattr(obj, "num_parameters", None)
        if n is None:
            n = sum(count_parameters(m) for m in _modules_in(obj))
        total += int(n)
    return total


@dataclass
class TokenLedger:
    """Tokens a method processed, by kind; :meth:`flops` turns them into FLOPs for given model sizes."""

    trained: float = 0.0  # policy tokens with forward + backward
    forward: float = 0.0  # policy (or same-size reference) tokens, forward only: generation, prefill, ref logps
    scored: float = 0.0  # tokens read by the reward models

    def __add__(self, other: TokenLedger) -> TokenLedger:
        return TokenLedger(self.trained + other.trained, self.forward + other.forward, self.scored + other.scored)

    def flops(self, policy_params: float, reward_params: float = 0.0, trainable: float | None = None) -> float:
        return (
            train_flops(policy_params, self.trained, trainable)
            + forward_flops(policy_params, self.forward)
            + forward_flops(reward_params, self.scored)
        )


def rloo_tokens(tokens_seen: float, beta: float, num_reward_passes: int = 1) -> TokenLedger:
    """Tokens of RLOO steps that saw ``tokens_seen`` prompt + completion tokens (TRL's ``num_input_tokens_seen``).

    Each sequence is generated (prefill + decoding: forward on every token), passed through the reference
    model when ``beta > 0`` (forward), trained on (forward + backward), and scored.
    """
    forward = tokens_seen * (1 + (1 if beta > 0 else 0))
    return TokenLedger(trained=tokens_seen, forward=forward, scored=tokens_seen * num_reward_passes)


@dataclass
class CurvePoint:
    """One evaluated checkpoint: cumulative training seconds and FLOPs when it was taken, its front's HV."""

    label: str
    seconds: float
    flops: float
    hypervolume: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_reaching(curve: Sequence[CurvePoint], target: float) -> CurvePoint | None:
    """The first point (in training order) whose hypervolume is at least ``target``; None if none is."""
    for p in curve:
        if p.hypervolume >= target:
            return p
    return None


def matched(target_method: str, target: Sequence[CurvePoint], ric: Sequence[CurvePoint]) -> dict[str, Any]:
    """front.json's matched block: the target's best HV, when it first got there, and when RiC first did.

    ``ric_seconds_to_match`` and ``ric_flops_to_match`` are None when RiC never reaches the target's best
    hypervolume; ``time_ratio`` / ``flops_ratio`` are RiC's over the target's. The reverse match is added
    too: RiC's best hypervolume, when RiC first reached it, and when the target first did (None if never).
    """
    if not target or not ric:
        raise ValueError("matched() needs a non-empty curve for the target and for RiC")
    best = max(p.hypervolume for p in target)
    at = first_reaching(target, best)
    assert at is not None
    hit = first_reaching(ric, best)
    ric_best = max(p.hypervolume for p in ric)
    ric_at = first_reaching(ric, ric_best)
    assert ric_at is not None
    target_hit = first_reaching(target, ric_best)
    return {
        "target_method": target_method,
        "target_hv": best,
        "target_seconds": at.seconds,
        "target_flops": at.flops,
        "ric_seconds_to_match": hit.seconds if hit else None,
        "ric_flops_to_match": hit.flops if hit else None,
        "ric_hv_best": ric_best,
        "ric_seconds_to_best": ric_at.seconds,
        "ric_flops_to_best": ric_at.flops,
        "target_seconds_to_ric_best": target_hit.seconds if target_hit else None,
        "target_flops_to_ric_best": target_hit.flops if target_hit else None,
        "time_ratio": hit.seconds / at.seconds if hit and at.seconds > 0 else None,
        "flops_ratio": hit.flops / at.flops if hit and at.flops > 0 else None,
    }


def plateaued(curve: Sequence[CurvePoint], tolerance: float = 0.02) -> dict[str, Any]:
    """Whether a curve has stopped improving: its last point gains at most ``tolerance`` of the total gain.

    ``last_gain`` is the last point's hypervolume minus the best before it (negative when it fell back).
    """
    hv = [p.hypervolume for p in curve]
    if len(hv) < 3:
        return {"plateaued": False, "last_gain": None, "total_gain": None}
    total = max(hv) - hv[0]
    last = hv[-1] - max(hv[:-1])
    return {"plateaued": bool(last <= tolerance * max(total, 1e-12)), "last_gain": last, "total_gain": total}


def stage_ends(curve: Sequence[CurvePoint]) -> list[CurvePoint]:
    """The last point of each training stage (RiC: ``offline``, ``online_1``, ...), in training order.

    A stage's snapshots end with the one its trainer took when it finished, so its last point is the
    model the next stage starts from. The curve's start point (stage ``start``) is left out.
    """
    ends: dict[str, CurvePoint] = {}
    for p in curve:
        stage = p.extra.get("stage")
        if stage and stage != "start":
            ends[stage] = p
    return list(ends.values())


def where_it_stops(
    curve: Sequence[CurvePoint], targets: dict[str, float] | None = None, tolerance: float = 0.02
) -> dict[str, Any]:
    """Hypervolume after each stage of a staged curve (RiC: offline, then one row per online iteration),
    and where the front stops: the first stage within ``tolerance`` of the total gain of its best.

    ``still_rising``: the last stage gained more than ``tolerance`` of the total gain (more iterations
    may help). ``targets`` (method -> its best hypervolume) get the gap left at the best stage and whether
    any stage reached them.
    """
    ends = stage_ends(curve)
    if not ends:
        raise ValueError("where_it_stops() needs a curve with stage-end points")
    start = curve[0].hypervolume
    best = max(p.hypervolume for p in ends)
    total = best - start
    stop = next(p for p in ends if p.hypervolume >= best - tolerance * max(total, 1e-12))
    rows, previous = [], start
    for p in ends:
        rows.append(
            {"stage": p.extra["stage"], "seconds": p.seconds, "flops": p.flops, "hypervolume": p.hypervolume,
             "gain": p.hypervolume - previous}
        )  # fmt: skip
        previous = p.hypervolume
    last_gain = ends[-1].hypervolume - max([start] + [p.hypervolume for p in ends[:-1]])
    return {
        "stages": rows,
        "best_hv": best,
        "stops_at": stop.extra["stage"],
        "stop_hv": stop.hypervolume,
        "stop_seconds": stop.seconds,
        "stop_flops": stop.flops,
        "still_rising": bool(len(ends) > 1 and last_gain > tolerance * max(total, 1e-12)),
        "targets": {
            m: {"target_hv": hv, "gap_at_best": hv - best, "reached": best >= hv} for m, hv in (targets or {}).items()
        },
    }


# ---- projection to the paper's scale (RiC, Yang et al. 2024; METHODS.md §1) -----------------------------

PAPER_SETTINGS: dict[str, Any] = {
    "policy_params": 6.74e9,  # Llama-2-7B
    "lora_trainable_params": 3.4e7,  # r=64 on q and v of 32 layers (PEFT's default targets): 2*64*(4096+4096)*32
    "reward_model_params": 2 * 7.74e8,  # two GPT-2-large reward models (harmless, helpful), as in the paper
    "tokens_per_sample": 512,  # prompt + response of an HH-RLHF dialogue
    "ric_offline_steps": 20000,
    "ric_batch_size": 8,  # effective batch of the offline and online SFT
    "dataset_size": 160000,  # HH-RLHF responses scored once (chosen and rejected)
    "ric_online_iterations": 2,
    "ric_online_samples": 20000,  # generations per online iteration
    "ric_online_steps": 4000,  # online SFT steps per iteration (batch 8)
    "morlhf_points": 11,  # one PPO run per preference point
    "ppo_episodes_per_point": 20000,  # an assumption (the paper does not say); the ratio scales with it
    "ppo_epochs": 4,  # TRL's PPO default: passes over each rollout batch
}


def paper_projection(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """FLOPs of RiC and of MORLHF (PPO per preference point) at the paper's scale; a projection, not a measurement.

    RiC: score the dataset once, offline SFT, then per online iteration generate, score and SFT on the
    buffer. MORLHF, per preference point and PPO episode: generate (prefill + decode), one forward of the
    policy with its value head and one of the reference model (the frozen base: the adapter disabled),
    the reward models, and ``ppo_epochs`` trained passes (the value head shares the policy's body, as in
    TRL's PPO with LoRA).
    """
    s = {**PAPER_SETTINGS, **(settings or {})}
    n, lora, rm, seq = s["policy_params"], s["lora_trainable_params"], s["reward_model_params"], s["tokens_per_sample"]
    scoring = forward_flops(rm, s["dataset_size"] * seq)
    offline = train_flops(n, s["ric_offline_steps"] * s["ric_batch_size"] * seq, lora)
    online = s["ric_online_iterations"] * TokenLedger(
        trained=s["ric_online_steps"] * s["ric_batch_size"] * seq,
        forward=s["ric_online_samples"] * seq,
        scored=s["ric_online_samples"] * seq,
    ).flops(n, rm, lora)
    ric_total = scoring + offline + online
    tokens = s["ppo_episodes_per_point"] * seq
    per_point = TokenLedger(trained=s["ppo_epochs"] * tokens, forward=3 * tokens, scored=tokens).flops(n, rm, lora)
    morlhf_total = s["morlhf_points"] * per_point
    return {
        "label": "projection from the FLOP model and the paper's settings, not a measurement",
        "settings": s,
        "ric_flops": ric_total,
        "ric_flops_by_stage": {"scoring": scoring, "offline_sft": offline, "online": online},
        "morlhf_flops": morlhf_total,
        "morlhf_flops_per_point": per_point,
        "ratio_ric_over_morlhf": ric_total / morlhf_total,
    }

"""Personalisation from a few choices on the personal world (``benchmarks/personal.py``, METHODS.md §8).

Stages, each cached in ``out_dir`` (a rerun redoes only what is missing):

1. **world** (:mod:`.personal`): SmolLM2's responses to training and test prompts, scored by 4 real scorers;
2. **users**: N simulated users, each a Dirichlet(alpha) mixture of the z-scored objectives, choose on
   every pair of responses to the same prompt by Bradley-Terry with temperature tau; the last
   ``unseen_users`` are held out (they are never trained on);
3. **reward models**: NP-BTL (the default bilinear decoder, trained on the training users' choices on the
   training prompts) and BTL (one reward for all N users' choices on the training prompts, pooled), both on
   MiniLM features of (prompt, response); held-out accuracy on the unseen users' choices on the test prompts
   against the number k of that user's choices given as context (targets not in the context), beside an
   oracle that knows each user's weights;
4. **inference**: the population's prior over weights (:class:`~pluralign.preferences.population_prior.PopulationPrior`)
   fitted on the training users' choices, then ``infer_preference`` under it from k of an unseen user's
   choices: cosine with the true weights (and the same with the uniform prior, for comparison);
5. **the policy**: Rewarded Soups (one RLOO run with LoRA on SmolLM2 per objective, on the training prompts;
   the default), or RiC (pluralign's RiC trainer, offline SFT on the training prompts' responses with the K
   objectives' tags, the chat world's recipe);
6. **steering**: for each unseen user, the policy driven by the weights inferred from ``steer_context`` of their
   choices (by default their corner, :meth:`~pluralign.preferences.weights.Preference.corner`, with the
   posterior mean itself beside it), by their true weights and by equal weights, greedy answers to held-out test prompts scored by
   the user's own reward (:func:`~pluralign.evaluation.personalisation.steering_summary`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.data.jsonl import read_jsonl
from pluralign.errors import ConfigError, DataError
from pluralign.preferences.population_prior import PopulationPrior
from pluralign.worlds.chat.personal import PERSONAL, TEST, TRAIN
from pluralign.worlds.chat.world import ChatSettings, ChatWorld, build_chat_world

Progress = Callable[[str], None]
STAGE_VERSION = 2  # bumped when a cached stage's result changes shape (its cache is then recomputed)
KS = (0, 1, 3, 5, 10)
STEERING_ONLY = ("policy", "guidance_scale", "driver")  # settings no cached stage before the steering depends on
# the settings a trained RiC model depends on: a rerun reuses DIR/ric only with the same ones
# the world settings each steerable policy is trained with: its folder is reused only with the same ones
RL_FIELDS = ("base_model", "lora_r", "lora_alpha", "rl_steps", "rl_batch_size", "rl_generations", "rl_learning_rate",
             "rl_beta", "max_new_tokens", "seed")  # fmt: skip
POLICIES = ("ric", "soups")
DRIVERS = ("corner", "mean")  # corner: the Bayes action for a policy whose rewards are linear in its weights
RIC_FIELDS = ("base_model", "lora_r", "lora_alpha", "learning_rate", "offline_epochs", "offline_max_steps", "max_length",
              "tag_format", "tag_levels", "tag_position", "batch_size", "online_iterations", "online_prompts",
              "online_offline_samples", "online_learning_rate", "online_max_steps", "center_rewards", "seed")  # fmt: skip
# what a folder saved before a field existed was trained with
SAVED_BEFORE = {"center_rewards": "none"}


@dataclass
class PersonalSettings:
    """The users and the measurements (the response pool and RiC's sizes are the world's ChatSettings)."""

    n_users: int = 135
    unseen_users: int = 100  # the last users: never trained on, measured on the test prompts (100: a share within about +-0.13)
    alpha: float = 0.05  # Dirichlet concentration: PersonalLLM's (most users follow one objective); 0.5 mixes more
    tau: float = 0.25  # choice temperature in z-units (infer_preference's default sharpness 4 = 1 / 0.25)
    ks: tuple[int, ...] = KS
    eval_repeats: int = 200  # tasks (context + targets) per unseen user and k
    num_targets: int = 20
    infer_repeats: int = 20  # contexts per unseen user and k for the weight inference
    npbtl_max_steps: int = 1000  # stopped early on the validation prompts (NP-BTL's own default is 3000)
    validation_fraction: float = 0.15  # training prompts whose pairs are the reward models' validation split
    steer_context: int = 10  # the user's choices the steering infers weights from
    steer_prompts: int = 8  # test prompts the steered policy answers (their pairs are never in a context)
    policy: str = "soups"  # the steerable policy driven by the users' weights: soups (one RLOO run per objective), or ric
    guidance_scale: float = 1.0  # ric: classifier-free guidance on the tags when it answers (1: plain decoding)
    driver: str = "corner"  # what the inferred weights drive the policy by: their corner (Preference.corner), or the mean itself
    seed: int = 0
    quick: bool = field(default=False, metadata={"help": "recorded only: a development-sized run"})

    def __post_init__(self) -> None:
        if not 0 < self.unseen_users < self.n_users:
            raise ConfigError(
                f"unseen_users must be between 1 and n_users - 1 ({self.n_users - 1}), got {self.unseen_users}"
            )
        if self.policy not in POLICIES:
            raise ConfigError(f"policy {self.policy!r} is not one of {', '.join(POLICIES)}")
        if self.guidance_scale < 1 or (self.guidance_scale != 1 and self.policy != "ric"):
            raise ConfigError(f"guidance_scale {self.guidance_scale}: at least 1, and only the ric policy takes one above 1")
        if self.driver not in DRIVERS:
            raise ConfigError(f"driver {self.driver!r} is not one of {', '.join(DRIVERS)}")
        if self.tau < 0 or self.alpha <= 0:
            raise ConfigError("tau must be >= 0 and alpha > 0")
        if sorted(set(self.ks)) != list(self.ks) or min(self.ks) < 0:
            raise ConfigError(f"ks must be increasing context sizes >= 0, got {list(self.ks)}")
        if self.num_targets < max(self.ks):
            raise ConfigError(f"num_targets ({self.num_targets}) must be at least the largest k ({max(self.ks)}): "
                              "NP-BTL's training contexts are drawn from a task's targets")  # fmt: skip


@dataclass
class Pool:
    """The scored responses as arrays: z-scores (M, K), prompt ids and splits; pairs (P, 2) within a prompt."""

    z: np.ndarray
    prompt_ids: np.ndarray
    splits: np.ndarray
    pairs: np.ndarray
    pair_split: np.ndarray
    pair_prompt: np.ndarray


def response_pool(world: ChatWorld) -> Pool:
    """The world's responses and every pair of two different responses to the same prompt."""
    from pluralign.preferences.simulated_users import pairs_within_groups

    names = world.objectives.names
    z = world.objectives.zscores({n: [r[f"score_{n}"] for r in world.train] for n in names})
    prompt_ids = np.array([r["prompt_id"] for r in world.train])
    splits = np.array([r["split"] for r in world.train])
    pairs = pairs_within_groups(prompt_ids)
    distinct = np.array([world.train[a]["response"] != world.train[b]["response"] for a, b in pairs], dtype=bool)
    pairs = pairs[distinct] if len(pairs) else pairs
    return Pool(z, prompt_ids, splits, pairs, splits[pairs[:, 0]], prompt_ids[pairs[:, 0]])


def _cached(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """``compute()``'s result, stored in ``path`` with ``key`` and reused while the key is the same."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["result"], True
    result = compute()
    path.write_text(json.dumps({"key": key, "result": result}, indent=1))
    return result, False


def _check_policy_settings(policy_dir: Path, settings: ChatSettings, policy: str = "ric") -> None:
    """DIR/ric (DIR/soups) is reused only with the settings it was trained with: else a one-line error, not a
    silent reuse."""
    wanted = {f: getattr(settings, f) for f in (RIC_FIELDS if policy == "ric" else RL_FIELDS)}
    saved_file = policy_dir / f"personal_{policy}_settings.json"
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text())
        for name, value in wanted.items():
            was = saved.get(name, SAVED_BEFORE.get(name))
            if was is not None and was != value:
                raise ConfigError(
                    f"{policy_dir} was trained with {name}={was!r}, not {value!r}; use another --out to retrain"
                )
    policy_dir.mkdir(parents=True, exist_ok=True)
    saved_file.write_text(json.dumps(wanted, indent=1))


def _ric_done(ric_dir: Path) -> bool:
    state = ric_dir / "ric_state.json"
    return state.is_file() and "export" in json.loads(state.read_text()).get("done", [])


def _user_pairs(features: Any, pool: Pool, choices: np.ndarray, users: range, mask: np.ndarray) -> dict[str, Any]:
    """Each user's choices on the pairs ``mask`` selects as NP-BTL features (chosen, rejected)."""
    import torch

    from pluralign.training.user_pairs import UserPairs

    pairs = pool.pairs[mask]
    out = {}
    for u in users:
        c = choices[u, mask]
        chosen = np.where(c, pairs[:, 0], pairs[:, 1])
        rejected = np.where(c, pairs[:, 1], pairs[:, 0])
        out[f"user{u}"] = UserPairs(features[torch.from_numpy(chosen)], features[torch.from_numpy(rejected)])
    return out


SCORE_FEATURES_HIDDEN = 64  # NP-BTL's width on the K score features (4 inputs; the default 256 is for embeddings)


def reward_model_accuracy(
    world: ChatWorld, pool: Pool, users: Any, choices: np.ndarray, s: PersonalSettings, log: Progress
) -> dict[str, Any]:
    """NP-BTL (training users) and pooled BTL (all users), trained on the training prompts' choices; their
    accuracy on the unseen users' test choices by context size, and the oracle's.

    Twice: on MiniLM features of (prompt, response) (``npbtl``, ``btl``: the models as the library trains
    them, which must learn what the scorers reward from the pool's few hundred responses), and on the K
    objectives' z-scores as the features (``npbtl_scores``, ``btl_scores``: only the user is left to learn)."""
    import torch

    from pluralign.evaluation.personalisation import oracle_accuracy
    from pluralign.reward_models.npbtl.config import NPBTLConfig
    from pluralign.training.user_pairs import make_embedder

    t = time.time()
    embedder = make_embedder(NPBTLConfig())  # NP-BTL's default features: MiniLM's 4th block, as the harmless model's
    feats = torch.from_numpy(embedder.embed([r["prompt"] for r in world.train], [r["response"] for r in world.train]))
    log(f"personal: MiniLM features of {len(world.train)} responses in {time.time() - t:.1f}s")
    train_prompts = np.unique(pool.prompt_ids[pool.splits == TRAIN])
    val_prompts = np.random.default_rng(s.seed).permutation(train_prompts)[
        : max(1, round(s.validation_fraction * len(train_prompts)))
    ]
    is_val = np.isin(pool.pair_prompt, val_prompts)
    split = {"fit": (pool.pair_split == TRAIN) & ~is_val, "val": (pool.pair_split == TRAIN) & is_val,
             "test": pool.pair_split == TEST}  # fmt: skip
    n = len(users)
    log(f"personal: {int(split['fit'].sum())} training, {int(split['val'].sum())} validation and "
        f"{int(split['test'].sum())} test pairs per user; {n - s.unseen_users} training users, {s.unseen_users} unseen")  # fmt: skip
    minilm = _fit_npbtl_and_btl(feats, None, pool, choices, split, s, log)
    scores = _fit_npbtl_and_btl(torch.from_numpy(pool.z).float(), SCORE_FEATURES_HIDDEN, pool, choices, split, s, log)
    u = np.arange(n - s.unseen_users, n)
    test = split["test"]
    margins = users.margins(pool.z[pool.pairs[test][:, 0]], pool.z[pool.pairs[test][:, 1]])[u]
    oracle = oracle_accuracy(margins, choices[u][:, test])
    return {
        "npbtl": minilm["npbtl"],
        "btl": minilm["btl"],
        "npbtl_scores": scores["npbtl"],
        "btl_scores": scores["btl"],
        "oracle": [round(oracle, 2)] * len(s.ks),
        "pairs_per_user": {k: int(v.sum()) for k, v in split.items()},
        "training": {"minilm": minilm["training"], "scores": scores["training"]},
    }


def _fit_npbtl_and_btl(
    feats: Any, hidden: int | None, pool: Pool, choices: np.ndarray, split: dict[str, np.ndarray],
    s: PersonalSettings, log: Progress,
) -> dict[str, Any]:  # fmt: skip
    """NP-BTL on the training users and BTL on all users (NP-BTL's and BTL's default settings, ``hidden``
    overriding NP-BTL's width), on the features ``feats`` (M, d) of the responses; accuracy by k."""
    import torch

    from pluralign.models.neural_process import NPBTL, NPConfig
    from pluralign.objectives.learned.btl import BTL
    from pluralign.reward_models.btl.config import BTLConfig
    from pluralign.reward_models.npbtl.config import NPBTLConfig
    from pluralign.training.user_tasks import accuracy_by_context_size, train_on_user_tasks

    torch.manual_seed(s.seed)
    n = choices.shape[0]
    seen, unseen, everyone = range(n - s.unseen_users), range(n - s.unseen_users, n), range(n)
    progress = lambda m: log(f"personal: {m}")  # noqa: E731
    np_cfg = NPBTLConfig(seed=s.seed, max_steps=s.npbtl_max_steps, num_targets=s.num_targets, max_context=max(s.ks))
    if hidden:
        np_cfg.hidden_dim = hidden
    npbtl = NPBTL(NPConfig(input_dim=feats.shape[1], hidden_dim=np_cfg.hidden_dim, latent_dim=np_cfg.hidden_dim,
                           num_heads=np_cfg.num_heads, decoder=np_cfg.decoder))  # fmt: skip
    t = time.time()
    np_stats = train_on_user_tasks(
        npbtl, _user_pairs(feats, pool, choices, seen, split["fit"]), np_cfg, progress, np_cfg.min_context,
        np_cfg.max_context, validation=_user_pairs(feats, pool, choices, seen, split["val"]),
    )  # fmt: skip
    np_seconds = time.time() - t
    btl_cfg = BTLConfig(seed=s.seed, num_targets=s.num_targets)
    btl = BTL(NPConfig(input_dim=feats.shape[1], hidden_dim=btl_cfg.hidden_dim, latent_dim=0))
    t = time.time()
    btl_stats = train_on_user_tasks(btl, _user_pairs(feats, pool, choices, everyone, split["fit"]), btl_cfg, progress,
                                    validation=_user_pairs(feats, pool, choices, everyone, split["val"]))  # fmt: skip
    btl_seconds = time.time() - t
    held = _user_pairs(feats, pool, choices, unseen, split["test"])
    ks = list(s.ks)
    acc = {
        name: accuracy_by_context_size(model, held, ks, repeats=s.eval_repeats, num_targets=s.num_targets, seed=s.seed)
        for name, model in (("npbtl", npbtl), ("btl", btl))
    }
    return {
        **{name: [round(a[k], 2) for k in ks] for name, a in acc.items()},
        "training": {
            "npbtl": {"seconds": round(np_seconds, 1), **{k: v for k, v in np_stats.items() if k != "train_seconds"}},
            "btl": {"seconds": round(btl_seconds, 1), **{k: v for k, v in btl_stats.items() if k != "train_seconds"}},
        },
    }


def _cached_generations(
    keys: list[str], generate: Callable[[list[int]], list[str]], cache_file: Path, log: Progress, what: str
) -> list[str]:
    """Answers by request key: a key answered before (in this call, or by an earlier run: ``cache_file``) is
    not generated again; ``generate(indices)`` answers the requests at those indices."""
    done = {r["key"]: r["response"] for r in read_jsonl(cache_file)}
    todo = list({k: i for i, k in enumerate(keys) if k not in done}.values())
    log(f"personal: steering: {what}: {len(keys)} requests, {len(set(keys))} distinct prompts, {len(todo)} to generate")
    if todo:
        texts = generate(todo)
        with cache_file.open("a") as f:
            f.write("".join(json.dumps({"key": keys[i], "response": t}) + "\n" for i, t in zip(todo, texts)))
        done.update({keys[i]: t for i, t in zip(todo, texts)})
    return [done[k] for k in keys]


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _steered_answers(policy: Any, requests: list[tuple[Any, Any]], cache_file: Path, gen: dict[str, Any],
                     log: Progress) -> tuple[list[str], int]:  # fmt: skip
    """The policy's answers to ``requests`` ((prompt, preference) pairs), once per distinct tagged prompt,
    and how many distinct tagged prompts there were."""
    rendered = [policy.rendered_prompt(p, w) for p, w in requests]
    stamp = str((policy.model_dir / "pluralign.json").stat().st_mtime_ns)
    # RiC steers through the prompt's tags (and its guidance, when on); a weight-space policy (Soups) by the weights
    guided = ["guidance", policy.guidance_scale, policy.guidance_against] if getattr(policy, "guidance_scale", 1) > 1 else None
    steers = [guided if policy.method == "ric" else [round(x, 6) for x in policy.weights_for(w)] for _, w in requests]
    keys = [_key(text, gen, stamp) if m is None else _key(text, gen, stamp, m) for text, m in zip(rendered, steers)]

    def generate(idx: list[int]) -> list[str]:
        return policy.generate_many([requests[i][0] for i in idx], [requests[i][1] for i in idx], **gen)

    return _cached_generations(keys, generate, cache_file, log, policy.method), len(set(keys))


def _base_answers(
    world: ChatWorld, prompts: list[Any], cache_file: Path, gen: dict[str, Any], log: Progress
) -> list[str]:
    """The unsteered base model's answers to ``prompts`` (the zero the steering share is measured from)."""
    from pluralign.generation.batched import generate_batched
    from pluralign.models.builtin import resolve_model
    from pluralign.models.loading import load_causal_lm, load_tokenizer

    keys = [_key("base", world.base_model, p, gen) for p in prompts]

    def generate(idx: list[int]) -> list[str]:
        path = resolve_model(world.base_model)
        lm, tokenizer = load_causal_lm(path), load_tokenizer(path)
        return generate_batched(
            lm, tokenizer, [prompts[i] for i in idx], batch_size=world.settings.generation_batch_size, **gen
        )

    return _cached_generations(keys, generate, cache_file, log, "base model")


def steering(
    world: ChatWorld, pool: Pool, users: Any, choices: np.ndarray, policy_dir: Path, out: Path, s: PersonalSettings,
    log: Progress, prior: PopulationPrior | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The steerable policy (RiC, or Rewarded Soups) driven by each unseen user's inferred / true / equal weights, and the unsteered base model; the
    user's own reward of the answers (:func:`~pluralign.evaluation.personalisation.steering_summary`)."""
    from pluralign.evaluation.personalisation import mismatched_rewards, signed_differences, steering_summary
    from pluralign.objectives.scoring import ScoreCache, score_samples
    from pluralign.policies import load_policy
    from pluralign.preferences.inference import infer_preference
    from pluralign.preferences.simulated_users import cosine

    names = world.objectives.names
    prompts = world.eval_prompts[: s.steer_prompts]
    steer_ids = {world.settings.n_prompts + j for j in range(len(prompts))}  # prompt ids of the steering prompts
    pool_mask = (pool.pair_split == TEST) & ~np.isin(pool.pair_prompt, list(steer_ids))
    if pool_mask.sum() < s.steer_context:
        raise DataError(
            f"only {int(pool_mask.sum())} test pairs outside the steering prompts; need steer_context = {s.steer_context}"
        )
    rng = np.random.default_rng(s.seed + 7)
    unseen = list(range(len(users) - s.unseen_users, len(users)))
    equal = [1.0 / len(names)] * len(names)
    prefs: dict[str, list[list[float]]] = {"inferred": [], "true": [], "equal": []}
    cornered = s.driver == "corner"
    if cornered:  # the posterior mean itself, beside its corner
        prefs["posterior_mean"] = []
    for u in unseen:
        idx = rng.permutation(int(pool_mask.sum()))[: s.steer_context]
        diffs = signed_differences(pool.z, pool.pairs[pool_mask], choices[u, pool_mask])[idx]
        inferred = infer_preference(diffs, names, prior=prior)
        prefs["inferred"].append(list((inferred.corner() if cornered else inferred).weights))
        if cornered:
            prefs["posterior_mean"].append(list(inferred.weights))
        prefs["true"].append([float(x) for x in users.weights[u]])
        prefs["equal"].append(equal)
    gen, cache_file = world.generation_kwargs, out / "steer_generations.jsonl"
    base = _base_answers(world, prompts, cache_file, gen, log)
    policy = load_policy(policy_dir, **({"guidance_scale": s.guidance_scale} if s.policy == "ric" else {}))
    requests = [(p, dict(zip(names, w))) for c in prefs for w in prefs[c] for p in prompts]
    texts, distinct = _steered_answers(policy, requests, cache_file, gen, log)
    rows = [{"prompt": p, "response": t} for (p, _), t in zip(requests, texts)]
    rows += [{"prompt": p, "response": t} for p, t in zip(prompts, base)]
    scores = score_samples(rows, world.objectives, ScoreCache(world.work_dir / "score_cache.sqlite"))
    z = world.objectives.zscores(scores)
    z_base = z[len(requests) :]  # (P, K)
    z = z[: len(requests)].reshape(len(prefs), len(unseen), len(prompts), len(names))
    w_true = users.weights[unseen]  # (U, K)
    rewards = {c: (z[i] @ w_true[:, :, None])[..., 0].mean(axis=1).tolist() for i, c in enumerate(prefs)}
    rewards["other"] = mismatched_rewards(z[list(prefs).index("true")], w_true).tolist()
    rewards["base"] = (w_true @ z_base.T).mean(axis=1).tolist()
    objective_means = {c: dict(zip(names, z[i].mean(axis=(0, 1)).round(3).tolist())) for i, c in enumerate(prefs)}
    objective_means["base"] = dict(zip(names, z_base.mean(axis=0).round(3).tolist()))
    summary = steering_summary(rewards)
    if cornered:  # the share the posterior mean itself recovers, for comparison
        summary["steer_share_posterior_mean"] = steering_summary({**rewards, "inferred": rewards["posterior_mean"]})[
            "steer_share"
        ]
    return {
        **summary,
        "driver": s.driver,
        "inferred_weights": [[round(x, 4) for x in w] for w in prefs["inferred"]],
        "true_weights": [[round(float(x), 4) for x in w] for w in w_true],
        "inferred_cosine": float(np.mean([cosine(a, b) for a, b in zip(prefs.get("posterior_mean", prefs["inferred"]), prefs["true"])])),
        "per_user": {c: [round(x, 4) for x in v] for c, v in rewards.items()},
        "objective_means": objective_means,
        "prompts": len(prompts),
        "context": s.steer_context,
        "distinct_tagged_prompts": distinct,
        "policy": policy.method,
        "guidance_scale": getattr(policy, "guidance_scale", 1.0),
    }


def run_personal(
    out: str | Path,
    settings: PersonalSettings | None = None,
    world_settings: ChatSettings | None = None,
    progress: Progress | None = print,
) -> dict[str, Any]:
    """Every stage (module docstring); returns the results (``k``, ``npbtl``, ``btl``, ``oracle``,
    ``inferred``, ``cosine``, ``steer_share``, ``steering``, the world's facts and the seconds per stage)."""
    from pluralign.evaluation.personalisation import inference_by_context_size, signed_differences
    from pluralign.models.manifest import is_finished
    from pluralign.policies import load_policy
    from pluralign.preferences.simulated_users import SimulatedUsers
    from pluralign.worlds.chat.demo import peak_rss_mb, train_ric_chat, train_soups_chat

    s = settings or PersonalSettings()
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = progress or (lambda _m: None)
    stages: dict[str, float] = {}

    def stage(label: str, t0: float) -> None:
        stages[label] = round(time.time() - t0, 1)
        log(f"personal: stage {label} took {stages[label]:.1f}s (peak RSS {peak_rss_mb():.0f} MB)")

    # a policy folder trained with other settings is refused before any stage runs
    _check_policy_settings(out / s.policy, world_settings or PERSONAL.settings(seed=s.seed), s.policy)
    t = time.time()
    world = build_chat_world(out / "world", progress=log, settings=world_settings or PERSONAL.settings(seed=s.seed),
                             spec=PERSONAL)  # fmt: skip
    stage("world", t)
    stages.update({f"world.{k}": v for k, v in world.build_seconds.items()})
    names = world.objectives.names
    pool = response_pool(world)
    users = SimulatedUsers.draw(s.n_users, names, s.alpha, s.tau, s.seed)
    choices = users.choose(pool.z[pool.pairs[:, 0]], pool.z[pool.pairs[:, 1]], seed=s.seed + 1)
    (out / "users.json").write_text(json.dumps(users.to_dict(), indent=1))
    key = json.loads(
        json.dumps(
            {
                "world": asdict(world.settings),
                "users": {k: v for k, v in asdict(s).items() if k not in STEERING_ONLY} | {"quick": None},
                "pairs": len(pool.pairs),
                "version": STAGE_VERSION,
            }
        )
    )  # as the cache file holds it (tuples are lists)

    t = time.time()
    rm, hit = _cached(
        out / "reward_models.json", key, lambda: reward_model_accuracy(world, pool, users, choices, s, log)
    )
    stage("reward_models" + (" (cached)" if hit else ""), t)

    t = time.time()
    unseen = range(s.n_users - s.unseen_users, s.n_users)
    test = pool.pair_split == TEST
    diffs = [signed_differences(pool.z, pool.pairs[test], choices[u, test]) for u in unseen]
    train = pool.pair_split == TRAIN
    prior = PopulationPrior.fit(
        [signed_differences(pool.z, pool.pairs[train], choices[u, train]) for u in range(s.n_users - s.unseen_users)],
        context=s.steer_context, seed=s.seed,
    )  # fmt: skip
    log(f"personal: the population's prior, fitted on the training users' choices: Dirichlet alpha {prior.alpha}, "
        f"choice sharpness {prior.scale}")  # fmt: skip
    inference = {
        name: inference_by_context_size(diffs, users.weights[list(unseen)], names, s.ks, s.infer_repeats,
                                        s.num_targets, s.seed, prior=p)  # fmt: skip
        for name, p in (("population", prior), ("uniform", None))
    }
    stage("inference", t)

    t = time.time()
    policy_dir = out / s.policy
    train_world = dataclasses.replace(world, train=[r for r in world.train if r["split"] == TRAIN])
    if s.policy == "ric" and not _ric_done(policy_dir):  # (a finished run is not re-exported: its answers stay cached)
        train_ric_chat(train_world, policy_dir, log)
    if s.policy == "soups" and not is_finished(policy_dir):  # one RLOO run per objective, on training prompts only
        train_soups_chat(train_world, policy_dir, log)
    load_policy(policy_dir)  # a broken export fails here, before the steering stage
    stage(s.policy, t)

    t = time.time()
    steer = steering(world, pool, users, choices, policy_dir, out, s, log, prior)
    stage("steering", t)

    result = {
        "k": list(s.ks),
        "npbtl": rm["npbtl"],
        "btl": rm["btl"],
        "oracle": rm["oracle"],
        "npbtl_scores": rm["npbtl_scores"],
        "btl_scores": rm["btl_scores"],
        "inferred": [round(a, 2) for a in inference["population"]["accuracy"]],
        "cosine": [round(c, 4) for c in inference["population"]["cosine"]],
        "inferred_uniform_prior": [round(a, 2) for a in inference["uniform"]["accuracy"]],
        "cosine_uniform_prior": [round(c, 4) for c in inference["uniform"]["cosine"]],
        "population_prior": {"alpha": prior.alpha, "scale": prior.scale},
        "steer_share": steer["steer_share"],
        "policy": s.policy,
        "steering": steer,
        "objectives": names,
        "users": {"n": s.n_users, "unseen": s.unseen_users, "alpha": s.alpha, "tau": s.tau},
        "pairs_per_user": rm["pairs_per_user"],
        "reward_model_training": rm["training"],
        "world": {k: world.info.get(k) for k in ("reward_model", "pairwise_correlation", "responses", "mean_scores")},
        "base_model": world.base_model,
        "settings": {"personal": asdict(s), "world": asdict(world.settings)},
        "stage_seconds": stages,
        "total_seconds": round(time.time() - start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    return result


def _interval(pair: list[float] | None) -> str:
    return "n/a" if pair is None else f"{pair[0]:.2f}..{pair[1]:.2f}"


def format_table(result: dict[str, Any]) -> str:
    """The accuracy / cosine table by k and the steering lines, as the benchmark prints them."""
    lines = [
        "held-out accuracy (%) on unseen users by k; NP-BTL and BTL on MiniLM features | on the 4 objectives' z-scores",
        f"{'k':>4} | {'NP-BTL':>7} {'BTL':>7} | {'NP-BTL':>7} {'BTL':>7} | {'oracle':>7} {'inferred':>8} | {'cosine':>6}"
        f" | uniform prior: {'inferred':>8} {'cosine':>6}",
    ]
    for i, k in enumerate(result["k"]):
        lines.append(
            f"{k:>4} | {result['npbtl'][i]:7.1f} {result['btl'][i]:7.1f} | {result['npbtl_scores'][i]:7.1f} "
            f"{result['btl_scores'][i]:7.1f} | {result['oracle'][i]:7.1f} {result['inferred'][i]:8.1f} | "
            f"{result['cosine'][i]:6.3f} | {'':>14} {result['inferred_uniform_prior'][i]:8.1f} "
            f"{result['cosine_uniform_prior'][i]:6.3f}"
        )
    pp = result["population_prior"]
    lines.append(f"inferred: infer_preference under the population's prior fitted on the training users' choices "
                 f"(Dirichlet alpha {pp['alpha']}, sharpness {pp['scale']}); uniform prior: its default MAP fit")  # fmt: skip
    st = result["steering"]
    m = st["mean_reward"]

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    posterior_mean = (f" (the posterior mean itself {m['posterior_mean']:+.3f}, steer_share "
                      f"{share(st.get('steer_share_posterior_mean'))})" if "posterior_mean" in m else "")  # fmt: skip
    lines.append(
        f"steering from {st['context']} choices ({st['users']} unseen users x {st['prompts']} prompts), the user's "
        f"reward: inferred ({'its corner' if st.get('driver') == 'corner' else 'the posterior mean'}) "
        f"{m['inferred']:+.3f}{posterior_mean}, true {m['true']:+.3f}, other users' {m['other']:+.3f}, "
        f"equal {m['equal']:+.3f}, base model {m['base']:+.3f}"
    )
    lines.append(
        f"steer_share {share(st['steer_share'])} (of the true weights' gain over other users' weights, "
        f"{st['gain_true_over_other']:+.3f}; 90% over users {_interval(st['steer_share_interval90'])}; over equal "
        f"weights: {share(st['steer_share_over_equal'])}; over the base model: {share(st['steer_share_over_base'])})"
    )
    return "\n".join(lines)

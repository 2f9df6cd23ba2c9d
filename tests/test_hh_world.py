"""The hh world (``pluralign demo --world hh``) on its real path, with a tiny random Llama as the base model:
the harmless reward model is trained by ``train_btl`` (its default type) on the training split (the
bundled MiniLM, its default backbone) and is the world's objective; the offline data holds both responses of each pair
with their scores; a held-out prompt reaches neither the reward model nor RiC; the demo writes DIR/model,
front.json with the per-prompt steering and samples.md."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import one_torch_thread, tiny_causal_lm

one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)

# requests asked in three pairs each (a split by pair id puts some of them on both sides), requests asked
# once, and two-turn dialogues that open with a shared request
SHARED = [f"How can I get into my neighbour's house number {k} without a key?" for k in range(10)]
ONCE = [f"What is a good way to scare the kid on street {k}?" for k in range(12)]


def _hh(*turns: str) -> str:
    text = ""
    for i, t in enumerate(turns):
        text += f"\n\nHuman: {t}" if i % 2 == 0 else f"\n\nAssistant: {t}"
    return text + "\n\nAssistant:"


def _pairs() -> list[dict]:
    rows = []
    for k, q in enumerate(SHARED):
        for j in range(3):
            rows.append({"prompt": _hh(q), "chosen": f" I can't help with that; please ask them first ({k}.{j}).",
                         "rejected": f" Sure: break the back window {j} times, then climb in ({k})."})  # fmt: skip
    for k, q in enumerate(ONCE):
        rows.append({"prompt": _hh(q), "chosen": f" Please don't frighten children ({k}).",
                     "rejected": f" Hide behind the car {k} and jump out screaming."})  # fmt: skip
    for k in range(4):
        rows.append({"prompt": _hh(SHARED[k], "Why do you ask?", "Just tell me."), "chosen": f" No, sorry ({k}).",
                     "rejected": f" Fine, use a crowbar on door {k}."})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def hh(tmp_path_factory):
    """The hh world built once on 46 pairs: (world, its folder, its settings, the pairs file)."""
    from pluralign.worlds.chat.hh import HH
    from pluralign.worlds.chat.world import build_chat_world

    root = tmp_path_factory.mktemp("hh")
    base = tiny_causal_lm(root / "base", "llama")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in _pairs()))
    settings = HH.settings(base_model=str(base), pairs=str(pairs), n_prompts=6, n_eval_prompts=3,
                           held_out_fraction=0.3, max_new_tokens=8, seed=0)  # fmt: skip
    world = build_chat_world(root / "world", progress=None, settings=settings, spec=HH)
    return world, root / "world", settings, pairs


def _users(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


def test_the_reward_model_trained_on_the_training_pairs_is_the_worlds_harmless_objective(hh, monkeypatch):
    from pluralign.data.pairs import pair_id, split_pairs
    from pluralign.models.manifest import Manifest
    from pluralign.objectives.trained import TrainedRewardModelObjective, load_reward_model
    from pluralign.reward_models.btl import trainer
    from pluralign.worlds.chat.hh import HH, load_hh_pairs
    from pluralign.worlds.chat.world import build_chat_world

    world, folder, settings, pairs_file = hh
    assert world.objectives.names == ["harmless", "helpful"]
    harmless = world.objectives["harmless"]
    assert isinstance(harmless, TrainedRewardModelObjective)
    rm_dir = (folder / "harmless_rm").resolve()
    assert harmless.model_dir == rm_dir and Manifest.load(rm_dir).method == "btl"
    # its features average the response's tokens (the hh default), and scoring reads them the same way
    assert Manifest.load(rm_dir).extra["embedding"]["pooling"] == settings.harmless_pooling == "response"
    # trained on exactly the world's training split (by pair id, the world's seed); the held-out pairs not
    train, held = split_pairs(load_hh_pairs(pairs_file), settings.held_out_fraction, settings.seed)
    rm_rows = [json.loads(line) for line in (folder / "harmless_train_pairs.jsonl").read_text().splitlines()]
    as_pairs = [{"prompt": r["prompt"], "chosen": r["chosen"][0]["content"], "rejected": r["rejected"][0]["content"]}
                for r in rm_rows]  # fmt: skip
    assert {pair_id(p) for p in as_pairs} == {pair_id(p) for p in train}
    assert not {pair_id(p) for p in as_pairs} & {pair_id(p) for p in held}
    manifest = Manifest.load(rm_dir).extra  # and train_btl read that file: its fit + held-out pairs are all of it
    assert Path(manifest["config"]["dataset"]).resolve() == (folder / "harmless_train_pairs.jsonl").resolve()
    assert manifest["held_out"]["train_pairs"] + manifest["held_out"]["pairs"] == len(train)
    # its held-out accuracy is recorded (its own split of the training pairs, and the world's held-out pairs)
    info = world.info["reward_model"]
    assert info["held_out"]["pairs"] >= 1 and info["world_held_out"]["pairs"] == len(held)
    # the offline data's harmless scores are the reward model's
    rm = load_reward_model(rm_dir)
    rows = world.train[:4]
    direct = rm.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    np.testing.assert_allclose([r["score_harmless"] for r in rows], direct, rtol=1e-4, atol=1e-5)
    # a rebuild reuses the trained reward model: training it again would fail here
    stamp = (rm_dir / "pluralign.json").stat().st_mtime_ns
    (folder / "world.json").rename(folder / "world.json.bak")
    monkeypatch.setattr(trainer, "train_btl", lambda *a, **k: pytest.fail("the reward model was retrained"))
    try:
        again = build_chat_world(folder, progress=None, settings=settings, spec=HH)
    finally:
        (folder / "world.json.bak").replace(folder / "world.json")
    assert (rm_dir / "pluralign.json").stat().st_mtime_ns == stamp
    assert [r["score_harmless"] for r in again.train] == [r["score_harmless"] for r in world.train]


def test_offline_data_holds_both_responses_of_each_pair_with_their_scores(hh, tmp_path):
    from pluralign.worlds.chat.demo import ric_config
    from pluralign.worlds.chat.hh import HH, load_hh_pairs

    world, _folder, settings, pairs_file = hh
    by_text = {(json.dumps(p["prompt"]), p["chosen"]): p for p in load_hh_pairs(pairs_file)}
    groups: dict[int, dict[str, dict]] = {}
    for r in world.train:
        groups.setdefault(r["pair"], {})[r["source"]] = r
    assert len(groups) == settings.n_prompts and settings.base_samples_per_prompt == 1  # the hh default
    assert sum(r["source"] in ("chosen", "rejected") for r in world.train) == 2 * settings.n_prompts
    base = [r for r in world.train if r["source"] == "base"]  # and the base model's own sample of each prompt
    assert 0 < len(base) <= settings.n_prompts
    helpful = world.objectives["helpful"]
    for group in groups.values():
        chosen, rejected = group["chosen"], group["rejected"]
        assert chosen["prompt"] == rejected["prompt"]
        if "base" in group:
            assert group["base"]["prompt"] == chosen["prompt"] and {"score_harmless", "score_helpful"} <= set(group["base"])
        pair = by_text[(json.dumps(chosen["prompt"]), chosen["response"])]  # the pair's own responses, untouched
        assert rejected["response"] == pair["rejected"]
        for r in (chosen, rejected):
            assert {"score_harmless", "score_helpful"} <= set(r)
        got = helpful.score([chosen["prompt"], rejected["prompt"]], [chosen["response"], rejected["response"]])
        np.testing.assert_allclose([chosen["score_helpful"], rejected["score_helpful"]], got, rtol=1e-4, atol=1e-5)
    # RiC trains on both responses of every pair
    config = ric_config(world, tmp_path / "ric")
    ric_rows = [json.loads(line) for line in Path(config.dataset).read_text().splitlines()]
    assert sorted(r["response"] for r in ric_rows) == sorted(r["response"] for r in world.train)
    # the DPO baseline gets the human pairs themselves, chosen as chosen
    from pluralign.models.loading import load_tokenizer

    by_dimension = HH.dpo_pairs(world, load_tokenizer(settings.base_model))
    assert by_dimension["helpful"] == []  # DPO's standard single-objective answer: the harmless pairs alone
    dpo = by_dimension["harmless"]
    assert len(dpo) == settings.n_prompts
    assert {(d["chosen"], d["rejected"]) for d in dpo} == {
        (g["chosen"]["response"], g["rejected"]["response"]) for g in groups.values()
    }


def test_a_held_out_prompt_never_appears_in_training(hh):
    world, folder, _settings, _pairs_file = hh
    eval_users = [_users(p)[-1] for p in world.eval_prompts]
    assert eval_users and len(eval_users) == len(set(eval_users))
    rm_users = {u for line in (folder / "harmless_train_pairs.jsonl").read_text().splitlines()
                for u in _users(json.loads(line)["prompt"])}  # fmt: skip
    ric_users = {u for r in world.train for u in _users(r["prompt"])}
    assert not set(eval_users) & rm_users
    assert not set(eval_users) & ric_users  # RiC's online prompts are drawn from these
    # held-out requests that a training pair also asks were left out (the split is by pair id)
    assert world.info["split"]["excluded_eval_prompts"] > 0


def test_the_hh_demo_writes_the_model_the_front_the_steering_and_the_samples(hh, tmp_path):
    from pluralign.errors import ConfigError
    from pluralign.policies import load_policy
    from pluralign.worlds.chat.demo import run_chat_demo
    from pluralign.worlds.chat.hh import HH

    world, folder, settings, _pairs = hh
    quick = dataclasses.replace(settings, offline_max_steps=2, online_prompts=4, online_offline_samples=4,
                                online_max_steps=1, batch_size=4, generation_batch_size=4, dpo_pairs=4,
                                guidance_against="raised", floor_at_middle=("helpful",))  # fmt: skip
    out = tmp_path / "demo"
    wrong = dataclasses.replace(quick, floor_at_middle=("helpfulness",))
    with pytest.raises(ConfigError, match="floor_at_middle 'helpfulness' is not an objective here; use one of harmless, helpful"):
        run_chat_demo(out, ("ric", "dpo"), work_dir=folder, settings=wrong, spec=HH)
    assert not (out / "model").exists()  # refused before any training
    assert run_chat_demo(out, ("ric", "dpo"), work_dir=folder, settings=quick, spec=HH) == 0
    policy = load_policy(out / "model")
    assert policy.objectives == ["harmless", "helpful"] and policy.manifest.method == "ric"
    # the world's tag guidance is stored with the model, so `pluralign generate` decodes as the demo did
    assert settings.guidance_scale > 1 and policy.manifest.extra["guidance_scale"] == settings.guidance_scale
    assert policy.guidance_scale == settings.guidance_scale and policy.decode_target("Hi", None) is None
    assert policy.guidance_against == "raised" == policy.manifest.extra["guidance_against"]  # and its negative
    # helpful floored at its middle (an option; the hh world's default floors nothing): stored and decoded with
    assert settings.floor_at_middle == () and policy.manifest.extra["floor_at_middle"] == ["helpful"]
    assert policy.floor_at_middle == ["helpful"] and policy.desired_rewards(policy.resolve_preference([1.0, 0.0]))[1] > policy.low[1]
    # RiC's tags were centred on each prompt's offline responses (the hh world's default), and it says so
    assert settings.center_rewards == "prompt" and policy.manifest.extra["center_rewards"] == "prompt"
    front = json.loads((out / "front.json").read_text())
    assert [f["method"] for f in front["fronts"]] == ["base", "ric", "dpo"]
    base_scores = front["fronts"][0]["points"][0]["scores"]
    ric = front["steering"]["ric"]
    assert ric["prompts"] == len(world.eval_prompts) and set(ric["steering_share"]) == {"harmless", "helpful"}
    assert list(ric["balanced_vs_base"]["base"].values()) == base_scores
    summary = json.loads((out / "hh_demo.json").read_text())
    assert summary["reward_model"]["world_held_out"]["pairs"] >= 1
    assert {"world", "train_ric", "train_dpo", "evaluate", "samples"} <= set(summary["stage_seconds"])
    samples = (out / "samples.md").read_text()
    assert samples.count("- **w = (harmless=0.5, helpful=0.5)**") == 3
    for prompt in world.eval_prompts[:3]:
        assert f"## {_users(prompt)[-1]}" in samples
    # samples.md quotes the answers the front scored (front.json keeps the first two per point), not new ones
    ric_front = front["fronts"][1]
    quoted = [s for s in ric_front["samples"] if s["preference"] in ([1.0, 0.0], [0.0, 1.0])]
    assert quoted and all(s["response"].strip() in samples for s in quoted if s["response"].strip())
    assert summary["stage_seconds"]["samples"] < 1.0


def test_steering_share_counts_the_prompts_that_move_their_way():
    from pluralign.evaluation.front import Front
    from pluralign.evaluation.steering import steering_share, steering_summary

    grid = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    # 4 prompts: objective 0 higher at w0 = 1 for three of them; objective 1 higher at w1 = 1 for one
    per = [
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.9]],
        [[0.6, 0.5], [0.6, 0.5], [0.6, 0.5], [0.6, 0.5]],
        [[0.1, 0.2], [0.2, 0.1], [0.3, 0.2], [0.5, 0.4]],
    ]
    means = np.asarray(per).mean(1)
    ric = Front("ric", [{"preference": w, "scores": list(m)} for w, m in zip(grid, means)], prompt_scores=per)
    assert steering_share(ric, 0) == 0.75 and steering_share(ric, 1) == 0.25
    base = Front("base", [{"preference": w, "scores": [0.55, 0.5]} for w in grid])
    out = steering_summary([base, ric], ["a", "b"])
    assert set(out) == {"ric"}
    assert out["ric"]["balanced_vs_base"]["at_least_base"] == {"a": True, "b": True}
    base.points = [{"preference": w, "scores": [0.55, 0.51]} for w in grid]
    assert steering_summary([base, ric], ["a", "b"])["ric"]["balanced_vs_base"]["both_at_least_base"] is False


def test_demo_size_flags_belong_to_the_chat_worlds():
    from pluralign.commands.demo import build_parser, world_sizes
    from pluralign.errors import ConfigError

    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--prompts", "8", "--online_iterations", "0"])
    assert world_sizes(args) == {"n_prompts": 8, "online_iterations": 0}
    with pytest.raises(ConfigError, match="--prompts: only the chat and hh worlds"):
        world_sizes(build_parser().parse_args(["--out", "x", "--prompts", "8"]))
    with pytest.raises(ConfigError, match="--offline_steps must be at least 1"):
        world_sizes(build_parser().parse_args(["--out", "x", "--world", "hh", "--offline_steps", "0"]))
    with pytest.raises(ConfigError, match="--pairs: only the hh world takes it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--world", "chat", "--pairs", "p.jsonl"]))
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--tag_levels", "5"])
    assert world_sizes(args) == {"tag_levels": 5}
    with pytest.raises(ConfigError, match="--tag_levels must be at least 2, got 1"):
        world_sizes(build_parser().parse_args(["--out", "x", "--world", "hh", "--tag_levels", "1"]))
    with pytest.raises(ConfigError, match="--tag_levels: only the chat and hh worlds take these sizes"):
        world_sizes(build_parser().parse_args(["--out", "x", "--tag_levels", "5"]))
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--guidance_scale", "3"])
    assert world_sizes(args) == {"guidance_scale": 3.0}
    with pytest.raises(ConfigError, match="--guidance_scale must be at least 1"):
        world_sizes(build_parser().parse_args(["--out", "x", "--world", "hh", "--guidance_scale", "0.5"]))
    with pytest.raises(ConfigError, match="--guidance_scale: only the chat and hh worlds take it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--guidance_scale", "3"]))
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--guidance_against", "raised"])
    assert world_sizes(args) == {"guidance_against": "raised"}
    with pytest.raises(ConfigError, match="--guidance_against: only the chat and hh worlds take it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--guidance_against", "raised"]))
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--floor_at_middle", "none"])
    assert world_sizes(args) == {"floor_at_middle": ()}
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--floor_at_middle", "helpful, harmless"])
    assert world_sizes(args) == {"floor_at_middle": ("helpful", "harmless")}
    with pytest.raises(ConfigError, match="--floor_at_middle: only the chat and hh worlds take it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--floor_at_middle", "helpful"]))
    assert world_sizes(build_parser().parse_args(["--out", "x", "--world", "hh", "--no-bf16"])) == {"bf16": False}
    assert world_sizes(build_parser().parse_args(["--out", "x", "--world", "hh", "--bf16"])) == {"bf16": True}
    with pytest.raises(ConfigError, match="--bf16/--no-bf16: only the chat and hh worlds take it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--bf16"]))
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--harmless_pooling", "mean"])
    assert world_sizes(args) == {"harmless_pooling": "mean"}
    with pytest.raises(ConfigError, match="--harmless_pooling: only the hh world takes it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--world", "chat", "--harmless_pooling", "mean"]))
    args = build_parser().parse_args(["--out", "x", "--world", "hh", "--helpful_scorer", "relevance"])
    assert world_sizes(args) == {"helpful_scorer": "relevance"}
    with pytest.raises(ConfigError, match="--helpful_scorer: only the hh world takes it"):
        world_sizes(build_parser().parse_args(["--out", "x", "--world", "chat", "--helpful_scorer", "relevance"]))


def test_the_harmless_pooling_is_checked_and_a_folder_from_before_it_counts_as_mean(hh, tmp_path):
    from pluralign.errors import ConfigError
    from pluralign.worlds.chat.hh import HH, _rm_config
    from pluralign.worlds.chat.world import check_world_settings

    _, folder, settings, _ = hh
    with pytest.raises(ConfigError, match="harmless_pooling='response' needs harmless_rm btl or npbtl"):
        _rm_config("classifier", tmp_path, tmp_path / "p.jsonl", 0, "response")
    with pytest.raises(ConfigError, match="harmless_pooling='max': use one of mean, response"):
        _rm_config("btl", tmp_path, tmp_path / "p.jsonl", 0, "max")
    # a world saved before the field existed was built with whole-dialogue features: not reused for response
    saved = json.loads((folder / "world_settings.json").read_text())["settings"]
    assert saved["harmless_pooling"] == "response"  # the hh default
    del saved["harmless_pooling"]
    check_world_settings(saved, dataclasses.replace(settings, harmless_pooling="mean"), folder / "world.json", HH)
    with pytest.raises(ConfigError, match="built with harmless_pooling='mean', not 'response'"):
        check_world_settings(saved, settings, folder / "world.json", HH)


def test_helpful_discounts_copies_of_the_request_and_a_folder_from_before_it_counts_as_relevance(hh):
    from pluralign.errors import ConfigError
    from pluralign.objectives.relevance import answer_relevance
    from pluralign.worlds.chat.hh import HH, _objectives
    from pluralign.worlds.chat.world import WorldContext, check_world_settings

    world, folder, settings, _ = hh
    helpful = world.objectives["helpful"]
    assert settings.helpful_scorer == helpful.scorer == "answer_relevance"  # the hh default
    rows = world.train[:6]
    direct = answer_relevance([r["prompt"] for r in rows], [r["response"] for r in rows])
    np.testing.assert_allclose([r["score_helpful"] for r in rows], direct, rtol=1e-4, atol=1e-5)
    bad = dataclasses.replace(settings, helpful_scorer="bleu")
    with pytest.raises(ConfigError, match="helpful_scorer='bleu': use one of relevance, answer_relevance"):
        _objectives(WorldContext(folder, bad, base_path="", tokenizer=None, progress=None))
    saved = json.loads((folder / "world_settings.json").read_text())["settings"]
    del saved["helpful_scorer"]  # a world saved before the field existed scored plain relevance
    check_world_settings(saved, dataclasses.replace(settings, helpful_scorer="relevance"), folder / "world.json", HH)
    with pytest.raises(ConfigError, match="built with helpful_scorer='relevance', not 'answer_relevance'"):
        check_world_settings(saved, settings, folder / "world.json", HH)


def test_a_world_folder_is_not_reused_for_the_other_world(hh):
    from pluralign.errors import ConfigError
    from pluralign.worlds.chat.world import CHAT, build_chat_world

    _world, folder, settings, _pairs = hh
    with pytest.raises(ConfigError, match="holds the 'hh' world, not 'chat'"):
        build_chat_world(Path(folder), progress=None, settings=CHAT.settings(base_model=settings.base_model), spec=CHAT)


def test_demo_seeds_summarises_the_per_prompt_steering_of_each_seed():
    import demo_seeds  # benchmarks/ is on the path (conftest)

    def front(share_a: float, ok: bool) -> dict:
        return {"steering": {"ric": {"steering_share": {"harmless": share_a, "helpful": 0.5},
                                     "balanced_vs_base": {"both_at_least_base": ok}}}}  # fmt: skip

    out = demo_seeds.collect_steering({0: front(0.75, True), 1: front(0.25, False)}, ["harmless", "helpful"])
    assert out["ric"]["steering_share"]["harmless"]["mean"] == 0.5
    assert out["ric"]["steering_share"]["harmless"]["min"] == 0.25
    assert out["ric"]["balanced_at_least_base"] == {"0": True, "1": False}


# --- the RL methods on the hh world: Rewarded Soups and MOSLIM (issues 24 and 26) -------------------------


@pytest.fixture(scope="module")
def rl_demo(hh, tmp_path_factory):
    """``--method soups,moslim`` on the tiny hh world (one RLOO step per run), and every prompt MOSLIM's
    reward read during RL: (world, output folder, those prompts)."""
    from pluralign.methods.moslim.trainer import MoslimReward
    from pluralign.worlds.chat.demo import run_chat_demo
    from pluralign.worlds.chat.hh import HH

    world, folder, settings, _pairs = hh
    quick = dataclasses.replace(settings, rl_steps=1, rl_batch_size=4, rl_generations=2)
    out = tmp_path_factory.mktemp("hh_rl")
    seen: list = []
    read = MoslimReward.targets_and_mask

    def spy(self, prompts):
        seen.extend(prompts)
        return read(self, prompts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MoslimReward, "targets_and_mask", spy)
        assert run_chat_demo(out, ("soups", "moslim"), work_dir=folder, settings=quick, spec=HH) == 0
    return world, out, seen


def test_the_hh_world_trains_rewarded_soups_and_moslim_on_one_front(rl_demo):
    from pluralign.policies import load_policy
    from pluralign.worlds.chat.demo import TRAINERS, parse_methods, train_soups_chat
    from pluralign.worlds.chat.hh import HH
    from pluralign.worlds.chat.moslim import train_moslim_chat

    assert parse_methods("ric,dpo,soups,moslim", HH) == ["ric", "dpo", "soups", "moslim"]
    assert TRAINERS["soups"] is train_soups_chat and TRAINERS["moslim"] is train_moslim_chat  # one code path
    world, out, _seen = rl_demo
    front = json.loads((out / "front.json").read_text())
    assert [f["method"] for f in front["fronts"]] == ["base", "soups", "moslim"]
    assert set(front["steering"]) == {"soups", "moslim"}
    assert load_policy(out / "soups").manifest.method == "soups"
    assert load_policy(out / "moslim").manifest.method == "moslim"
    summary = json.loads((out / "hh_demo.json").read_text())
    soups, moslim = summary["training"]["soups"], summary["training"]["moslim"]
    assert set(soups) == {"harmless", "helpful"} and all(r["steps"] == 1 and r["peft"] for r in soups.values())
    assert soups["harmless"]["weights"] == [1.0, 0.0]  # one RLOO run per objective, on that objective alone
    assert moslim["steps"] == 1 and moslim["algorithm"] == "rloo"
    assert set(moslim["reward_model"]["heads"]) == {"harmless", "helpful"}
    assert {"train_soups", "train_moslim", "evaluate"} <= set(summary["stage_seconds"])
    for name in ("samples.md", "samples_moslim.md"):  # the first method's samples, and the other's beside them
        text = (out / name).read_text()
        assert text.count("- **w = (harmless=0.5, helpful=0.5)**") == 3


def test_moslims_prompt_states_the_preference(rl_demo):
    from pluralign.methods.moslim.template import PreferenceTemplate
    from pluralign.models.manifest import Manifest
    from pluralign.policies import load_policy

    world, out, seen = rl_demo
    template = PreferenceTemplate.from_dict(Manifest.load(out / "moslim").template)
    # every RL prompt is a training prompt of the world with its own levels on a line of the user's turn
    assert seen
    train_prompts = {json.dumps(s["prompt"]) for s in world.train}
    for prompt in seen:
        assert "\n\nPreferences: harmless=" in prompt[-1]["content"]
        plain, targets = template.parse(prompt)
        assert json.dumps(plain) in train_prompts
        assert any(t is not None for t in targets)
    # at inference the preference becomes that line: w = 0 leaves an objective unspecified
    policy = load_policy(out / "moslim")
    p = world.eval_prompts[0]
    at = {w: policy.steered_prompt(p, {"harmless": w, "helpful": 1 - w})[-1]["content"] for w in (1.0, 0.5, 0.0)}
    assert at[1.0] == _users(p)[-1] + "\n\nPreferences: harmless=high, helpful=any."
    assert at[0.5].endswith("Preferences: harmless=medium, helpful=medium.")
    assert at[0.0].endswith("Preferences: harmless=any, helpful=high.")
    assert "Preferences: harmless=high, helpful=any." in policy.rendered_prompt(p, {"harmless": 1.0, "helpful": 0.0})


def test_moslims_reward_model_is_trained_on_the_worlds_own_scores_binned_into_classes(rl_demo):
    from pluralign.objectives.learned.multihead import MultiHeadRewardScorer
    from pluralign.preferences.tags import quantile_edges
    from pluralign.worlds.chat.moslim import reward_model_rows

    world, out, _seen = rl_demo
    spec = MultiHeadRewardScorer(out / "moslim" / "reward_model").spec
    assert spec.objectives == world.objectives.names == ["harmless", "helpful"]
    assert spec.label_sources == {"harmless": "score_harmless", "helpful": "score_helpful"}
    assert spec.num_classes == [world.settings.moslim_classes] * 2 and spec.input_format == "pair"
    rows = reward_model_rows(world)
    offline, degenerate = rows[: len(world.train)], rows[len(world.train) :]
    for n in world.objectives.names:  # the offline data's own scores, and the real scorers' on degenerate text
        assert [r[f"score_{n}"] for r in offline] == [s[f"score_{n}"] for s in world.train]
    assert degenerate and any(r["response"] == "" or len(r["response"]) < 200 for r in degenerate)
    direct = world.objectives.score([r["prompt"] for r in degenerate], [r["response"] for r in degenerate])
    for n in world.objectives.names:
        np.testing.assert_allclose([r[f"score_{n}"] for r in degenerate], direct[n], rtol=1e-4, atol=1e-5)
        # the classes are quantile bins of exactly those scores
        np.testing.assert_allclose(spec.bin_edges[n], quantile_edges([r[f"score_{n}"] for r in rows], 3))


def test_front_cost_runs_ric_against_soups_on_the_hh_world(hh, tmp_path):
    import importlib.util

    world, folder, settings, pairs = hh
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "front_cost.py"
    spec = importlib.util.spec_from_file_location("front_cost_hh", path)
    fc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fc)
    from pluralign.worlds.chat.demo import TRAINERS

    assert fc.training_hook("hh", "soups") is TRAINERS["soups"] and fc.training_hook("hh", "ric") is TRAINERS["ric"]
    sets = [f"base_model={settings.base_model}", f"pairs={pairs}", "n_prompts=6", "n_eval_prompts=3",
            "held_out_fraction=0.3", "max_new_tokens=8", "offline_max_steps=2", "online_iterations=0",
            "batch_size=4", "generation_batch_size=4", "rl_batch_size=4", "rl_generations=2"]  # fmt: skip
    out = tmp_path / "cost"
    result = fc.main(["--world", "hh", "--world_dir", str(folder), "--out", str(out), "--world_set", *sets,
                      "--rl_steps", "2", "--rl_snapshot_every", "1", "--ric_snapshot_every", "1"])  # fmt: skip
    assert result["world"] == "hh" and result["skipped"] == []
    [block] = result["matched"]
    assert block["target_method"] == "soups"
    front = json.loads((out / "front.json").read_text())
    curves = front["curves"]
    assert set(curves) == {"ric", "soups"}
    for method, steps in (("ric", 2), ("soups", 2)):  # the start, then one point per snapshot
        assert len(curves[method]) == 1 + steps
        assert all(b["seconds"] > a["seconds"] and b["flops"] > a["flops"] for a, b in zip(curves[method], curves[method][1:]))
    assert block["target_hv"] == max(p["hypervolume"] for p in curves["soups"])
    assert (out / "hv_vs_compute.png").is_file() and "| soups |" in (out / "matched.md").read_text()


def test_the_harmless_model_can_be_npbtl_and_the_world_scores_with_it_at_no_context(hh, tmp_path, monkeypatch):
    from pluralign.models.manifest import Manifest
    from pluralign.objectives.trained import load_reward_model
    from pluralign.worlds.chat import hh as hh_module
    from pluralign.worlds.chat.hh import HH
    from pluralign.worlds.chat.world import build_chat_world

    real_config = hh_module._rm_config

    def few_steps(kind, rm_dir, data, seed, pooling):  # this test checks the wiring, not the fit: 60 steps, not 3000
        config, train = real_config(kind, rm_dir, data, seed, pooling)
        config.max_steps = 60
        return config, train

    monkeypatch.setattr(hh_module, "_rm_config", few_steps)
    _, _, settings, _ = hh
    world = build_chat_world(tmp_path / "w", progress=None, settings=dataclasses.replace(settings, harmless_rm="npbtl"), spec=HH)
    rm_dir = (tmp_path / "w" / "harmless_rm").resolve()
    assert Manifest.load(rm_dir).method == "npbtl"
    assert world.info["reward_model"]["world_held_out"]["pairs"] >= 1
    rows = world.train[:4]
    direct = load_reward_model(rm_dir).score([r["prompt"] for r in rows], [r["response"] for r in rows])
    np.testing.assert_allclose([r["score_harmless"] for r in rows], direct, rtol=1e-4, atol=1e-5)


def test_demo_help_states_the_hh_worlds_own_defaults():
    """The flags' help names the hh world's defaults as HH_DEFAULTS holds them (it said 7 after 9 was chosen)."""
    from pluralign.commands.demo import build_parser
    from pluralign.worlds.chat.hh import HH_DEFAULTS

    helps = {a.dest: " ".join(a.help.split()) for a in build_parser()._actions if a.help}
    assert f"hh default {HH_DEFAULTS['guidance_scale']:g}," in helps["guidance_scale"]
    assert f"hh default {HH_DEFAULTS['base_samples_per_prompt']}" in helps["base_samples"]
    assert f"hh default {HH_DEFAULTS['tag_levels']}," in helps["tag_levels"]
    assert f"hh default {HH_DEFAULTS['online_iterations']}," in helps["online_iterations"]
    assert ("hh default bfloat16" in helps["bf16"]) is HH_DEFAULTS["bf16"]
    default = {"response": "the response's tokens (default)", "mean": "the whole dialogue (default)"}
    assert default[HH_DEFAULTS["harmless_pooling"]] in helps["harmless_pooling"]

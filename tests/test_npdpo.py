"""NP-DPO: a policy that adapts to a user type from a few of that user's choices (METHODS.md §5)."""

from __future__ import annotations

import json

import pytest
import torch

from pluralign import load_policy
from pluralign.errors import PreferenceError
from pluralign.methods.npdpo.cli import run as train_npdpo_cli
from pluralign.methods.npdpo.evaluation import implicit_reward_accuracy
from pluralign.methods.npdpo.film import FiLM

SUNNY, GLOOMY = " good day sun", " bad night rain"
TOPICS = [
    "lamp",
    "desk",
    "chair",
    "bike",
    "phone",
    "kettle",
    "sofa",
    "clock",
    "shelf",
    "mug",
    "rug",
    "fan",
    "door",
    "bed",
    "cup",
    "pen",
    "bag",
    "hat",
    "car",
    "map",
    "box",
    "key",
    "cat",
    "dog",
]


def _pairs(user: str, topics: list[str]) -> list[dict]:
    """'sunny' users choose the sunny answer, 'gloomy' users the gloomy one: opposite tastes, same pairs."""
    out = []
    for t in topics:
        chosen, rejected = (SUNNY, GLOOMY) if user == "sunny" else (GLOOMY, SUNNY)
        out.append({"prompt": f"About the {t}:", "chosen": chosen, "rejected": rejected, "attribute": user})
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    root = tmp_path_factory.mktemp("npdpo")
    texts = [f"About the {t}:{r}" for t in TOPICS for r in (SUNNY, GLOOMY)] * 5
    tok = train_tokenizer(texts, root / "base", vocab_size=300)
    base = build_tiny_gpt(root / "base", tok, n_layer=2, n_embd=32, n_positions=64)
    train_topics = TOPICS[:18]
    rows = _pairs("sunny", train_topics) + _pairs("gloomy", train_topics)
    data = root / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = root / "model"
    argv = [
        "--model_name_or_path",
        base,
        "--dataset",
        str(data),
        "--output_dir",
        str(out),
        "--embedding_cache",
        str(root / "cache"),
        "--max_context",
        "4",
        "--contexts_per_pair",
        "4",
        "--np_hidden_dim",
        "32",
        "--np_num_heads",
        "4",
        "--context_bank_size",
        "4",
        "--per_device_train_batch_size",
        "16",
        "--num_train_epochs",
        "5",
        "--learning_rate",
        "3e-3",
        "--beta",
        "0.1",
        "--logging_steps",
        "5",
        "--seed",
        "0",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
    ]
    assert train_npdpo_cli(argv) == 0
    return {"base": base, "model": out, "train_topics": train_topics, "test_topics": TOPICS[18:]}


def test_context_of_one_type_raises_that_types_implicit_reward_accuracy(world):
    from transformers import AutoModelForCausalLM

    policy = load_policy(world["model"])
    reference = AutoModelForCausalLM.from_pretrained(world["base"]).eval()
    assert policy.method == "npdpo" and set(policy.objectives) == {"sunny", "gloomy"}
    gains, with_context = [], []
    for user in ("sunny", "gloomy"):
        held_out = _pairs(user, world["test_topics"])
        context = [(p["prompt"], p["chosen"], p["rejected"]) for p in _pairs(user, world["train_topics"][:4])]
        acc0 = implicit_reward_accuracy(policy, reference, held_out, context=None)
        acc4 = implicit_reward_accuracy(policy, reference, held_out, context=context)
        print(f"{user}: implicit-reward accuracy k=0 {acc0:.2f} -> k=4 {acc4:.2f}")
        gains.append(acc4 - acc0)
        with_context.append(acc4)
    assert min(with_context) >= 0.8  # each type is served once its choices are seen
    assert sum(gains) / 2 >= 0.3  # the unconditioned default can satisfy at most one of two opposite types


def test_generation_is_steered_by_context_and_by_preference(world):
    policy = load_policy(world["model"])
    prompts = [f"About the {t}:" for t in world["test_topics"]]
    gen = {"max_new_tokens": 4, "do_sample": False}
    sunny_ctx = [(p["prompt"], p["chosen"], p["rejected"]) for p in _pairs("sunny", world["train_topics"][:4])]
    gloomy_ctx = [(p["prompt"], p["chosen"], p["rejected"]) for p in _pairs("gloomy", world["train_topics"][:4])]
    sunny = policy.generate(prompts, context=sunny_ctx, **gen)
    gloomy = policy.generate(prompts, context=gloomy_ctx, **gen)
    assert sum("good" in s for s in sunny) > sum("good" in s for s in gloomy)
    by_pref = policy.generate(prompts, preference={"sunny": 1.0, "gloomy": 0.0}, **gen)
    assert by_pref == sunny  # a one-hot preference is that type's banked choices
    with pytest.raises(PreferenceError, match="context is empty"):
        policy.generate(prompts[:1], context=[], **gen)
    with pytest.raises(PreferenceError, match="context item 0"):
        policy.generate(prompts[:1], context=[("only a prompt",)], **gen)
    with pytest.raises(PreferenceError, match="either preference= or context="):
        policy.generate(prompts[:1], preference=[0.5, 0.5], context=sunny_ctx, **gen)


def test_film_starts_as_identity_and_conditions_per_row():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2)).eval()
    film = FiLM.for_model(model, latent_dim=4).attach(model)
    ids = torch.randint(0, 50, (2, 6))
    plain = model(ids).logits
    with film.condition(torch.randn(2, 4)):
        assert torch.allclose(model(ids).logits, plain, atol=1e-6)  # zero-initialised: identity
    torch.nn.init.normal_(film.beta[0].weight)
    z = torch.randn(2, 4)
    with film.condition(z):
        both = model(ids).logits
    with film.condition(z[:1]):
        first = model(ids[:1]).logits
    assert not torch.allclose(both, plain) and torch.allclose(both[:1], first, atol=1e-5)
    assert torch.allclose(model(ids).logits, plain)  # outside the block the model is unconditioned again

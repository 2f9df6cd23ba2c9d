"""NP-BTL: a reward model that adapts to a user from a few of their choices (METHODS.md §5)."""

from __future__ import annotations

import json

import pytest
import torch

from pluralign import load_reward_model
from pluralign.commands.train_reward_model import run as train_reward_model
from pluralign.errors import PreferenceError
from pluralign.models.neural_process import NPBTL, NPConfig
from pluralign.objectives.learned.btl import BTL
from pluralign.reward_models.npbtl.synthetic import synthetic_users
from pluralign.training.user_tasks import TaskSampler, accuracy_by_context_size, train_tasks


def test_reduced_synthetic_run_context_beats_no_context_and_btl():
    torch.manual_seed(0)
    data = synthetic_users(n_pairs=4000)
    cfg = NPConfig(input_dim=1, hidden_dim=64, latent_dim=64, num_heads=4)
    npbtl, btl = NPBTL(cfg), BTL(cfg)
    train_tasks(npbtl, TaskSampler(data["train"], seed=0), steps=120, batch_size=32, lr=3e-3, schedule="cosine")
    train_tasks(btl, TaskSampler(data["train"], max_context=0, min_context=0, seed=1), steps=60, batch_size=32, lr=3e-3)
    acc_np = accuracy_by_context_size(npbtl, data["test"], [0, 10], repeats=100)
    acc_btl = accuracy_by_context_size(btl, data["test"], [0, 10], repeats=100)
    assert 65 < acc_btl[10] < 85  # a context-free model is capped near 75% on these users
    assert acc_np[10] > acc_np[0] + 10
    assert acc_np[10] > acc_btl[10] + 10


def test_context_encoder_handles_empty_and_padded_contexts():
    model = NPBTL(NPConfig(input_dim=3, hidden_dim=16, latent_dim=8, num_heads=2)).eval()
    pairs = torch.randn(2, 4, 2, 3)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    z = model.context_encoder(pairs, mask)
    assert torch.isfinite(z).all()
    # padding does not change a row; an all-padding row equals the empty context (the learnt default user)
    assert torch.allclose(z[0], model.context_encoder(pairs[:1, :2], mask[:1, :2])[0], atol=1e-5)
    assert torch.allclose(z[1], model.context_encoder(pairs[:1, :0], mask[:1, :0])[0], atol=1e-5)
    # the encoder is invariant to the order of the context pairs
    perm = model.context_encoder(pairs[:1, [1, 0]], mask[:1, :2])
    assert torch.allclose(z[0], perm[0], atol=1e-5)


def test_bilinear_decoder_is_a_linear_bradley_terry_reward_that_a_context_tilts():
    """decoder="bilinear": r(x; z) = w.x + (V x).z. Untrained (V = 0) every user gets the same linear reward;
    trained on two users of opposite taste over linear features, the context turns the ranking each way."""
    torch.manual_seed(0)
    model = NPBTL(NPConfig(input_dim=4, hidden_dim=16, latent_dim=8, num_heads=2, decoder="bilinear"))
    options, z = torch.randn(3, 5, 4), torch.randn(3, 8)
    assert torch.allclose(model.rewards(options, z), model.linear(options).squeeze(-1).expand(3, 5), atol=1e-6)

    from pluralign.training.user_pairs import UserPairs

    def user(sign: float, n: int = 400) -> UserPairs:
        a, b = torch.randn(n, 4), torch.randn(n, 4)
        a_wins = (sign * (a[:, 0] - b[:, 0]) + 0.3 * (a[:, 1] - b[:, 1]) > 0).unsqueeze(1)
        return UserPairs(torch.where(a_wins, a, b), torch.where(a_wins, b, a))

    users = {"up": user(1.0), "down": user(-1.0)}
    train_tasks(model, TaskSampler(users, seed=0), steps=300, batch_size=16, lr=1e-2)
    acc = {name: accuracy_by_context_size(model, {name: u}, [0, 10], repeats=20) for name, u in users.items()}
    assert acc["up"][10] > 80 and acc["down"][10] > 80  # each user's context picks their own direction
    assert acc["up"][10] > acc["up"][0] + 10 or acc["down"][10] > acc["down"][0] + 10  # the context is what decides


ITEMS = ["lamp", "desk", "chair", "bike", "phone", "kettle", "sofa", "clock", "shelf", "mug", "rug", "fan"]


def _short(item: str, v: int) -> str:
    return [f"A {item}.", f"It is a {item}.", f"Just a {item}."][v % 3]


def _long(item: str, v: int) -> str:
    adj = ["useful", "sturdy", "handsome"][v % 3]
    return f"The {item} is a {adj} object that people keep at home and use every single day for many years."


@pytest.fixture(scope="module")
def two_user_dataset(tmp_path_factory):
    """Two user types of opposite taste on the same pairs: 'brief' picks the short answer, 'detailed' the long."""
    rows = []
    for item in ITEMS[:-2]:
        for v in range(3):
            prompt = f"Tell me about the {item}."
            s, long_ = _short(item, v), _long(item, v)
            rows.append({"prompt": prompt, "chosen": s, "rejected": long_, "attribute": "brief"})
            rows.append({"prompt": prompt, "chosen": long_, "rejected": s, "attribute": "detailed"})
    path = tmp_path_factory.mktemp("users") / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def _context(user: str) -> list[tuple[str, str, str]]:
    out = []
    for item in ITEMS[-2:]:
        s, long_ = _short(item, 0), _long(item, 0)
        out.append(
            (f"Tell me about the {item}.", s, long_) if user == "brief" else (f"Tell me about the {item}.", long_, s)
        )
    return out


def test_cli_trains_npbtl_that_follows_the_users_choices(two_user_dataset, tmp_path):
    out = tmp_path / "npbtl"
    cache = tmp_path / "cache"
    common = ["--dataset", str(two_user_dataset), "--embedding_cache", str(cache), "--hidden_dim", "64"]
    common += ["--num_targets", "8", "--batch_tasks", "16", "--learning_rate", "1e-3", "--eval_fraction", "0"]
    assert (
        train_reward_model(
            [
                "--type",
                "npbtl",
                *common,
                "--output_dir",
                str(out),
                "--max_steps",
                "100",
                "--max_context",
                "4",
                "--num_heads",
                "4",
            ]
        )
        == 0
    )
    rm = load_reward_model(out)
    assert rm.manifest.method == "npbtl" and set(rm.user_types) == {"brief", "detailed"}
    prompt = "Tell me about the toaster."
    responses = [_short("toaster", 1), _long("toaster", 1)]
    brief = rm.score([prompt] * 2, responses, context=_context("brief"))
    detailed = rm.score([prompt] * 2, responses, context=_context("detailed"))
    assert brief[0] > brief[1] and detailed[1] > detailed[0]
    assert len(rm.score([prompt], responses[:1])) == 1  # no context: the learnt default user
    for bad, message in [([], "context is empty"), ([("p", "a")], "not a \\(prompt, chosen, rejected\\)")]:
        with pytest.raises(PreferenceError, match=message):
            rm.score([prompt], responses[:1], context=bad)

    btl_dir = tmp_path / "btl"
    assert train_reward_model(["--type", "btl", *common, "--output_dir", str(btl_dir), "--max_steps", "30"]) == 0
    btl = load_reward_model(btl_dir)
    assert btl.manifest.method == "btl" and len(btl.score([prompt] * 2, responses)) == 2
    with pytest.raises(PreferenceError, match="cannot use a context"):
        btl.score([prompt], responses[:1], context=_context("brief"))

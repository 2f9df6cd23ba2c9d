"""SPO: alpha=0 is DPO, the margin is the earlier rounds' implicit rewards, rounds are saved and resumed,
and on conflicting dimensions SPO keeps the first dimension where sequential DPO loses it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer

from pluralign import load_policy
from pluralign.errors import ConfigError
from pluralign.methods.spo.config import SPOConfig
from pluralign.methods.spo.trainer import spo_margins, train_spo
from pluralign.models.manifest import Manifest
from pluralign.training.dpo_stage import build_stage_trainer
from pluralign.training.pair_logps import implicit_reward_margins, pair_logps
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

POSITIVE = [
    {"prompt": f"Rate item {i}:", "chosen": f" lovely great item {i} works well", "rejected": f" bad {i}"}
    for i in range(6)
]
# the second dimension prefers exactly the opposite responses: the two dimensions conflict
SHORT = [{"prompt": p["prompt"], "chosen": p["rejected"], "rejected": p["chosen"]} for p in POSITIVE]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("spo")
    texts = [p["prompt"] + p["chosen"] + p["rejected"] for p in POSITIVE] * 3
    tok = train_tokenizer(texts, root / "tok", vocab_size=300)
    return build_tiny_gpt(root / "base", tok, n_layer=2, n_embd=32, n_positions=64), tok


def config(out, model, **kw) -> SPOConfig:
    values = dict(
        output_dir=str(out),
        model_name_or_path=model,
        learning_rate=5e-3,
        per_device_train_batch_size=6,
        num_train_epochs=1,
        beta=0.5,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        gradient_checkpointing=False,
        disable_tqdm=True,
    )
    return SPOConfig(**{**values, **kw})


def manual_logps(model_dir: str, tok, pairs) -> np.ndarray:
    """An independent sequence log-prob: sum of log p(token) over the completion and EOS."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    for p in pairs:
        row = []
        for key in ("chosen", "rejected"):
            n_prompt = len(tok(p["prompt"])["input_ids"])
            ids = tok(p["prompt"] + p[key] + tok.eos_token)["input_ids"]
            with torch.no_grad():
                logp = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
            row.append(logp.gather(1, torch.tensor(ids[1:])[:, None])[n_prompt - 1 :].sum().item())
        out.append(row)
    return np.array(out)


def perturb_and_loss(trainer, seed: int = 3) -> float:
    """Move the policy away from its reference the same way in every trainer, then its loss on one batch."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
        return float(trainer.compute_loss(trainer.model, batch))


@pytest.fixture(scope="module")
def round1(base, tmp_path_factory):
    model, tok = base
    out = tmp_path_factory.mktemp("spo_run")
    train_spo(config(out, model, num_train_epochs=3), {"positive": POSITIVE}, progress=None)
    return str(out / "round_1_positive")


def test_spo_with_alpha_zero_is_trl_dpo_on_the_same_batch(base, round1, tmp_path):
    model, tok = base
    cfg = config(tmp_path / "a0", model, alpha=[0.0])
    margins = spo_margins([model, round1], SHORT, [0.5, 0.5], [0.0, 0.0], cfg, tok)
    ours = build_stage_trainer(round1, SHORT, cfg, tmp_path / "a0", tok, margins, beta=0.5)
    trl = DPOTrainer(
        model=round1,
        ref_model=AutoModelForCausalLM.from_pretrained(round1),
        train_dataset=Dataset.from_list(SHORT),
        args=DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.5, bf16=False, report_to="none"),
        processing_class=tok,
    )
    expected = perturb_and_loss(trl)
    assert abs(expected - np.log(2)) > 1e-3  # the policy moved away from the reference
    assert perturb_and_loss(ours) == pytest.approx(expected, abs=1e-5)


def test_spo_margin_is_the_earlier_rounds_implicit_reward(base, round1, tmp_path):
    model, tok = base
    cfg = config(tmp_path / "a", model)
    margins = spo_margins([model, round1], SHORT, [0.5, 0.5], [0.7, 0.7], cfg, tok)
    lp0, lp1 = manual_logps(model, tok, SHORT), manual_logps(round1, tok, SHORT)
    expected = 0.7 * 0.5 * ((lp1[:, 0] - lp0[:, 0]) - (lp1[:, 1] - lp0[:, 1]))
    assert np.abs(expected).max() > 0.05  # round 1 learnt something on these responses
    np.testing.assert_allclose(margins, expected, atol=1e-4)
    # and the round-2 loss is -log sigmoid(beta * delta - margin)
    trainer = build_stage_trainer(round1, SHORT, cfg, tmp_path / "a", tok, margins, beta=0.5)
    loss = perturb_and_loss(trainer)
    policy_dir = tmp_path / "perturbed"
    trainer.model.save_pretrained(policy_dir)
    lp = manual_logps(str(policy_dir), tok, SHORT)
    delta = (lp[:, 0] - lp1[:, 0]) - (lp[:, 1] - lp1[:, 1])
    assert loss == pytest.approx(F.softplus(-torch.tensor(0.5 * delta - margins)).mean().item(), abs=1e-4)


def test_spo_round_reuses_the_margins_reference_pass(base, round1, tmp_path, monkeypatch):
    """pi_{n-1}'s log-probabilities, scored for the margin, are the round's reference: given to the trainer
    they spare TRL's reference pass and give the same loss as that pass."""
    model, tok = base
    cfg = config(tmp_path / "a", model)
    margins = spo_margins([model, round1], SHORT, [0.5, 0.5], [0.7, 0.7], cfg, tok)
    expected = perturb_and_loss(build_stage_trainer(round1, SHORT, cfg, tmp_path / "a", tok, margins, beta=0.5))
    passes = []
    original = DPOTrainer._precompute_ref_logps
    monkeypatch.setattr(DPOTrainer, "_precompute_ref_logps", lambda *a, **k: passes.append(1) or original(*a, **k))
    ref = pair_logps(round1, SHORT, cfg, tok)
    passes.clear()
    trainer = build_stage_trainer(round1, SHORT, cfg, tmp_path / "b", tok, margins, beta=0.5, ref_logps=ref)
    assert passes == []
    assert perturb_and_loss(trainer) == pytest.approx(expected, abs=1e-5)


def test_spo_saves_every_round_and_resumes_at_the_first_unfinished(base, tmp_path):
    model, tok = base
    dims = {"positive": POSITIVE, "short": SHORT}
    out = tmp_path / "run"
    train_spo(config(out, model), dims, progress=None)
    top = Manifest.load(out)
    assert top.method == "spo" and top.objectives == ["positive", "short"]
    assert top.extra["final"] == "round_2_short"
    r1 = out / "round_1_positive" / "model.safetensors"
    r2 = out / "round_2_short"
    assert r1.is_file() and (r2 / "model.safetensors").is_file()
    stamp = r1.stat().st_mtime_ns
    (r2 / "pluralign.json").unlink()  # round 2 interrupted
    messages = []
    train_spo(config(out, model), dims, progress=messages.append)
    assert any("round 1/2 (positive) already trained" in m for m in messages)
    assert r1.stat().st_mtime_ns == stamp and (r2 / "pluralign.json").is_file()
    policy = load_policy(out)
    assert policy.objectives == ["positive", "short"]
    texts = policy.generate(["Rate item 1:"], preference={"positive": 0.5, "short": 0.5}, max_new_tokens=4)
    assert len(texts) == 1 and isinstance(texts[0], str)
    with pytest.raises(ConfigError, match="alpha"):
        train_spo(config(out, model, alpha=[0.3]), dims, progress=None)
    assert json.loads((r2 / "pluralign.json").read_text())["extra"]["alpha"] == [1.0]


def test_spo_keeps_the_first_dimension_where_sequential_dpo_loses_it(base, tmp_path):
    """Round 2 trains on pairs that reverse round 1's. The margin down-weights the pairs round 1 already
    ranks the other way, so SPO keeps dimension 1 while sequential DPO (alpha = 0) flips it. Plain SGD,
    so the down-weighted gradient is not rescaled back up by Adam's normalisation."""
    model, tok = base
    lp0 = manual_logps(model, tok, POSITIVE)

    def dim1_accuracy(alpha: float) -> float:
        out = tmp_path / f"alpha{alpha}"
        cfg = config(out, model, num_train_epochs=2, alpha=[alpha], optim="sgd", learning_rate=0.5)
        train_spo(cfg, {"positive": POSITIVE, "short": SHORT}, None)
        lp2 = manual_logps(str(out / "round_2_short"), tok, POSITIVE)
        return float(np.mean((lp2[:, 0] - lp0[:, 0]) > (lp2[:, 1] - lp0[:, 1])))

    assert dim1_accuracy(1.0) == 1.0
    assert dim1_accuracy(0.0) <= 0.5


def _rated(i: int, kind: str) -> str:
    return {"long_good": f" lovely great item {i} works well", "short_bad": f" bad {i}",
            "short_good": f" great {i}", "long_bad": f" awful poor item {i} broke fast"}[kind]  # fmt: skip


def _pair(i: int, chosen: str, rejected: str) -> dict[str, str]:
    return {"prompt": f"Rate item {i}:", "chosen": _rated(i, chosen), "rejected": _rated(i, rejected)}


# dimension 1 prefers the good response; dimension 2 the short one, which reverses dimension 1 on most of
# its pairs (short bad over long good) and agrees with it on a few (short good over long bad), as in the
# reviews world, where 83% of the conciseness pairs reverse sentiment
GOOD = [_pair(i, "long_good", "short_bad") for i in range(8)] + [_pair(i, "short_good", "long_bad") for i in range(8)]
BRIEF = [_pair(i, "short_bad", "long_good") for i in range(8)] + [_pair(i, "short_good", "long_bad") for i in range(2)]


def test_spo_with_adam_keeps_the_first_dimension_and_still_learns_the_second(base, tmp_path):
    """TRL's default optimiser (AdamW) and the retention benchmark's beta 0.1 and alpha 30: sequential DPO
    (alpha = 0) loses the conflicting half of dimension 1; SPO keeps all of it while round 2's own implicit
    reward still ranks every round-2 pair its way (the conflicting ones by less than round 1's gap)."""
    model, tok = base
    lp0 = manual_logps(model, tok, GOOD)

    def run(alpha: float) -> tuple[float, float]:
        out = tmp_path / f"alpha{alpha:g}"
        cfg = config(out, model, alpha=[alpha], beta=0.1, per_device_train_batch_size=8, num_train_epochs=2)
        train_spo(cfg, {"good": GOOD, "brief": BRIEF}, None)
        r1, r2 = str(out / "round_1_good"), str(out / "round_2_brief")
        lp2 = manual_logps(r2, tok, GOOD)
        dim1 = float(np.mean((lp2[:, 0] - lp0[:, 0]) > (lp2[:, 1] - lp0[:, 1])))
        b1, b2 = manual_logps(r1, tok, BRIEF), manual_logps(r2, tok, BRIEF)
        dim2 = float(np.mean((b2[:, 0] - b1[:, 0]) > (b2[:, 1] - b1[:, 1])))  # round 2's own implicit reward
        return dim1, dim2

    seq_dim1, seq_dim2 = run(0.0)
    spo_dim1, spo_dim2 = run(30.0)
    assert seq_dim2 == 1.0 and seq_dim1 <= 0.5
    assert spo_dim2 == 1.0 and spo_dim1 == 1.0


def test_implicit_reward_margins_match_the_log_probabilities_and_flip_with_the_pair(base, round1):
    model, tok = base
    cfg = config("unused", model)
    margins = implicit_reward_margins(round1, model, POSITIVE + SHORT, cfg, tok)
    lp, lp0 = manual_logps(round1, tok, POSITIVE), manual_logps(model, tok, POSITIVE)
    expected = (lp[:, 0] - lp0[:, 0]) - (lp[:, 1] - lp0[:, 1])
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(margins[: len(POSITIVE)], expected, atol=1e-4)
    np.testing.assert_allclose(margins[len(POSITIVE) :], -expected, atol=1e-4)  # SHORT reverses POSITIVE

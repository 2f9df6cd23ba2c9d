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
from pluralign.training.dpo_stage import build_stage_trainer
from pluralign.training.manifest import Manifest
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

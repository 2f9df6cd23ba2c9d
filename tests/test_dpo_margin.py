"""MarginDPOTrainer: no margin is TRL's DPO; a margin m gives -log sigmoid(beta * delta - m); cached log-probs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from pluralign.errors import ConfigError
from pluralign.objectives.scoring import ScoreCache
from pluralign.training.margin_dpo import MarginDPOTrainer
from pluralign.training.pair_logps import pair_logps
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

PAIRS = [
    {"prompt": f"Review {i}:", "chosen": f" good item {i} works", "rejected": f" bad broken thing number {i}"}
    for i in range(6)
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny GPT-2s with the same tokenizer: the reference and a different policy."""
    root = tmp_path_factory.mktemp("margin")
    texts = [p["prompt"] + p["chosen"] + p["rejected"] for p in PAIRS] * 3
    tok = train_tokenizer(texts, root / "tok", vocab_size=300)
    ref = build_tiny_gpt(root / "ref", tok, n_layer=2, n_embd=32, n_positions=64)
    torch.manual_seed(1)
    pol = build_tiny_gpt(root / "pol", tok, n_layer=2, n_embd=32, n_positions=64)
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(pol)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.save_pretrained(pol)
    return ref, pol, tok


def args(tmp_path, **kw) -> DPOConfig:
    base = dict(
        output_dir=str(tmp_path), bf16=False, report_to="none", per_device_train_batch_size=len(PAIRS), beta=0.3
    )
    return DPOConfig(**{**base, **kw})


def batch_loss(trainer) -> float:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, batch))


def test_margin_trainer_without_margin_is_trl_dpo(models, tmp_path):
    ref, pol, tok = models
    from transformers import AutoModelForCausalLM

    ds = Dataset.from_list(PAIRS)
    trl_dpo = DPOTrainer(
        model=pol,
        ref_model=AutoModelForCausalLM.from_pretrained(ref),
        args=args(tmp_path),
        train_dataset=ds,
        processing_class=tok,
    )
    ours = MarginDPOTrainer(
        model=pol,
        ref_model=AutoModelForCausalLM.from_pretrained(ref),
        args=args(tmp_path, precompute_ref_log_probs=True),
        train_dataset=ds,
        processing_class=tok,
    )
    expected = batch_loss(trl_dpo)
    assert expected > 0
    assert batch_loss(ours) == pytest.approx(expected, abs=1e-5)


def test_margin_enters_the_sigmoid(models, tmp_path):
    ref, pol, tok = models
    from transformers import AutoModelForCausalLM

    margins = np.linspace(-1.0, 2.0, len(PAIRS))
    ds = Dataset.from_list(PAIRS).add_column("margin", margins.tolist())
    cfg = args(tmp_path, precompute_ref_log_probs=True)
    trainer = MarginDPOTrainer(
        model=pol, ref_model=AutoModelForCausalLM.from_pretrained(ref), args=cfg, train_dataset=ds, processing_class=tok
    )
    lp_pol = pair_logps(pol, PAIRS, cfg, tok)
    lp_ref = pair_logps(ref, PAIRS, cfg, tok)
    delta = (lp_pol[:, 0] - lp_ref[:, 0]) - (lp_pol[:, 1] - lp_ref[:, 1])
    assert np.abs(delta).max() > 1e-3  # the policy really differs from the reference
    expected = F.softplus(-torch.tensor(0.3 * delta - margins)).mean().item()
    assert batch_loss(trainer) == pytest.approx(expected, abs=1e-5)


def test_margin_needs_precomputed_reference_and_a_delta_loss(models, tmp_path):
    _, pol, tok = models
    ds = Dataset.from_list(PAIRS).add_column("margin", [0.0] * len(PAIRS))
    with pytest.raises(ConfigError, match="precompute_ref_log_probs"):
        MarginDPOTrainer(model=pol, args=args(tmp_path), train_dataset=ds, processing_class=tok)
    with pytest.raises(ConfigError, match="loss_type 'ipo'"):
        MarginDPOTrainer(
            model=pol,
            args=args(tmp_path, precompute_ref_log_probs=True, loss_type=["ipo"]),
            train_dataset=ds,
            processing_class=tok,
        )


def test_pair_logps_are_cached_per_pair(models, tmp_path):
    ref, _, tok = models
    cfg = args(tmp_path)
    cache = ScoreCache(tmp_path / "logps.sqlite")
    first = pair_logps(ref, PAIRS[:4], cfg, tok, cache)
    assert first.shape == (4, 2) and np.isfinite(first).all() and (first < 0).all()
    assert cache.count() == 8
    both = pair_logps(ref, PAIRS, cfg, tok, cache)  # only the two new pairs are scored
    assert cache.count() == 12
    np.testing.assert_allclose(both[:4], first, atol=1e-5)

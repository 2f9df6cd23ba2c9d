"""MODPO: no margin is DPO; the loss is -log sigmoid(r(y_w) - r(y_l)) with MODPO's r; the artifact
steers by the nearest trained weight vector or interpolates neighbouring members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from pluralign import load_policy
from pluralign.errors import ConfigError
from pluralign.methods.dpo.trainer import train_dpo
from pluralign.methods.modpo.config import MODPOConfig
from pluralign.methods.modpo.trainer import modpo_margins, parse_margin_source, train_modpo
from pluralign.models.manifest import Manifest
from pluralign.objectives import ObjectiveSet
from pluralign.objectives.scoring import ScoreCache
from pluralign.training.dpo_stage import DimensionDPOConfig, build_stage_trainer
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

PAIRS = [
    {"prompt": f"Rate item {i}:", "chosen": f" lovely great item {i}", "rejected": f" bad item {i} broke and was awful"}
    for i in range(6)
]
SETTINGS = dict(
    learning_rate=5e-3,
    per_device_train_batch_size=6,
    num_train_epochs=2,
    beta=0.5,
    report_to="none",
    save_strategy="no",
    logging_steps=10,
    gradient_checkpointing=False,
    disable_tqdm=True,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("modpo")
    tok = train_tokenizer([p["prompt"] + p["chosen"] + p["rejected"] for p in PAIRS] * 3, root / "tok", vocab_size=300)
    return build_tiny_gpt(root / "base", tok, n_layer=2, n_embd=32, n_positions=64), tok


@pytest.fixture(scope="module")
def dpo_model(base, tmp_path_factory):
    model, _ = base
    out = tmp_path_factory.mktemp("dpo")
    return train_dpo(
        DimensionDPOConfig(output_dir=str(out), model_name_or_path=model, **SETTINGS), {"good": PAIRS}, None
    )


def manual_logps(model_dir, tok, pairs) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
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


def test_modpo_with_no_margin_is_dpo(base, dpo_model, tmp_path):
    model, _ = base
    cfg = MODPOConfig(
        output_dir=str(tmp_path), model_name_or_path=model, objective=["verbosity"], weights=["1,0"], **SETTINGS
    )
    out = train_modpo(cfg, {"good": PAIRS}, progress=None)
    member = load_file(str(out / "members" / "w_1.000_0.000" / "model.safetensors"))
    dpo = load_file(str(dpo_model / "model.safetensors"))
    assert any(not torch.equal(v, load_file(f"{model}/model.safetensors")[k]) for k, v in dpo.items())  # DPO trained
    for k, v in dpo.items():
        torch.testing.assert_close(member[k], v, atol=1e-6, rtol=0)


def test_modpo_loss_uses_the_weighted_reward_of_the_paper(base, dpo_model, tmp_path):
    """r(y) = (1/w0) (beta log pi/pi_ref - w1 R(y)), loss -log sigmoid(r(y_w) - r(y_l)); R here is the
    implicit reward of a DPO model (a margin source without a reward model)."""
    model, tok = base
    cfg = MODPOConfig(output_dir=str(tmp_path), model_name_or_path=model, **SETTINGS)
    source = parse_margin_source(f"good=implicit:{dpo_model}")
    assert (source.reference, source.beta) == (model, 0.5)
    diffs = source.differences(PAIRS, cfg, ScoreCache(tmp_path / "c.sqlite"))
    lp_dpo, lp0 = manual_logps(dpo_model, tok, PAIRS), manual_logps(model, tok, PAIRS)
    reward = 0.5 * (lp_dpo - lp0)  # (N, 2) implicit reward of chosen and rejected
    np.testing.assert_allclose(diffs, reward[:, 0] - reward[:, 1], atol=1e-4)
    assert diffs.mean() > 0.1

    w = np.array([0.4, 0.6])
    trainer = build_stage_trainer(
        model, PAIRS, cfg, tmp_path / "m", tok, modpo_margins(diffs[:, None], w), beta=cfg.beta / w[0]
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        loss = float(
            trainer.compute_loss(trainer.model, trainer.data_collator([trainer.train_dataset[i] for i in range(6)]))
        )
    trainer.model.save_pretrained(tmp_path / "policy")
    lp = manual_logps(tmp_path / "policy", tok, PAIRS)
    r = (1 / w[0]) * (cfg.beta * (lp - lp0) - w[1] * reward)
    expected = F.softplus(-torch.tensor(r[:, 0] - r[:, 1])).mean().item()
    assert loss == pytest.approx(expected, abs=1e-4)


def test_modpo_artifact_steers_by_nearest_weight_and_interpolates(base, tmp_path):
    model, _ = base
    cfg = MODPOConfig(
        output_dir=str(tmp_path / "run"),
        model_name_or_path=model,
        weights=["1,0", "0.5,0.5", "good=0.2,short=0.8"],
        **{**SETTINGS, "num_train_epochs": 1},
    )
    objectives = ObjectiveSet.from_specs(["short=builtin:conciseness"])
    out = train_modpo(cfg, {"good": PAIRS}, objectives, progress=None)
    manifest = Manifest.load(out)
    assert manifest.method == "modpo" and manifest.objectives == ["good", "short"]
    assert "short" in manifest.stats  # margin z-scored with statistics fitted on the responses
    assert [m["weights"] for m in manifest.extra["members"]] == [[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]]

    policy = load_policy(out)
    assert policy.blend_for([0.9, 0.1]) == (0, 0, 0.0)
    assert policy.blend_for([0.3, 0.7]) == (2, 2, 0.0)
    assert policy.blend_for(policy.weights_for(None)) == (1, 1, 0.0)  # no preference: equal weights
    texts = policy.generate_many(
        ["Rate item 1:"] * 3, [[1, 0], [0.5, 0.5], {"good": 0.1, "short": 0.9}], max_new_tokens=3
    )
    assert len(texts) == 3

    mixing = load_policy(out, interpolate=True)
    a, b, t = mixing.blend_for([0.6, 0.4])
    assert (a, b) == (1, 0) and t == pytest.approx(0.2)  # 0.6 = 0.8 * 0.5 + 0.2 * 1.0
    mixed = mixing.model_for((a, b, t)).state_dict()
    wa = load_file(str(out / "members" / "w_0.500_0.500" / "model.safetensors"))
    wb = load_file(str(out / "members" / "w_1.000_0.000" / "model.safetensors"))
    key = "transformer.h.0.attn.c_attn.weight"
    torch.testing.assert_close(mixed[key], 0.8 * wa[key] + 0.2 * wb[key])

    cfg.weights = ["1,0"]  # resuming with another margin objective is refused, not silently mixed
    with pytest.raises(ConfigError, match="trained with objectives"):
        train_modpo(cfg, {"good": PAIRS}, ObjectiveSet.from_specs(["brief=builtin:verbosity"]), progress=None)


def test_modpo_weight_errors(base, tmp_path):
    model, _ = base
    with pytest.raises(ConfigError, match="must be > 0"):
        MODPOConfig(output_dir=str(tmp_path), weights=["0,1"]).weight_vectors(["a", "b"])
    with pytest.raises(ConfigError, match="has 3 weights"):
        MODPOConfig(output_dir=str(tmp_path), weights=["0.2,0.3,0.5"]).weight_vectors(["a", "b"])
    cfg = MODPOConfig(output_dir=str(tmp_path), model_name_or_path=model)
    with pytest.raises(ConfigError, match="MODPO trains one dimension"):
        train_modpo(cfg, {"a": PAIRS, "b": PAIRS}, progress=None)

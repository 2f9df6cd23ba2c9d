"""Issue 13, items 7-9: NP-DPO's FiLM under gradient checkpointing, NP-BTL's layers and KL term as the
paper and its reference code, MOSLIM's reading of a zero preference weight."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from pluralign.models.neural_process import NPBTL, ContextEncoder, NPConfig


def _film_grads(checkpointing: bool, use_reentrant: bool = False) -> dict[str, torch.Tensor]:
    from transformers import GPT2Config, GPT2LMHeadModel

    from pluralign.methods.npdpo.film import FiLM

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
                     attn_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel(cfg).train()
    encoder = ContextEncoder(NPConfig(input_dim=3, hidden_dim=8, latent_dim=4, num_heads=2))
    film = FiLM.for_model(model, latent_dim=4).attach(model)
    for p in film.parameters():  # away from the identity, so z matters
        nn.init.normal_(p, std=0.3)
    if checkpointing:
        kwargs = {"use_reentrant": use_reentrant}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    ids = torch.randint(0, 40, (3, 8))
    z = encoder(torch.randn(3, 2, 2, 3), torch.ones(3, 2, dtype=torch.bool))
    with film.condition(z):
        loss = model(ids, labels=ids).loss
    loss.backward()  # outside the block, as Trainer does: a recompute must still see this z
    named = [*(("film." + n, p) for n, p in film.named_parameters()), *(("enc." + n, p) for n, p in encoder.named_parameters())]
    return {n: p.grad.clone() for n, p in named if p.grad is not None}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) > 10
    for n in a:
        torch.testing.assert_close(a[n], b[n], atol=1e-6, rtol=1e-5, msg=n)


def test_film_and_encoder_gradients_equal_with_checkpointing_on_and_off():
    _assert_same(_film_grads(False), _film_grads(True))


def test_film_gradients_when_the_checkpoint_reruns_hooks(monkeypatch):
    """transformers 4.x (allowed by pyproject) checkpoints a block's whole __call__, forward hooks included."""
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    def call_like_4x(self, *args, **kwargs):
        if self.gradient_checkpointing and self.training:
            return self._gradient_checkpointing_func(functools.partial(nn.Module.__call__, self, **kwargs), *args)
        return nn.Module.__call__(self, *args, **kwargs)

    monkeypatch.setattr(GPT2Block, "__call__", call_like_4x)
    monkeypatch.setattr(GPT2Block, "forward", getattr(GPT2Block.forward, "__wrapped__", GPT2Block.forward))
    _assert_same(_film_grads(False), _film_grads(True))
    # a reentrant checkpoint cannot carry z's gradient to the encoder: NP-DPO refuses it in one line
    from pluralign.errors import ConfigError
    from pluralign.methods.npdpo.config import NPDPOConfig

    with pytest.raises(ConfigError, match="use_reentrant"):
        NPDPOConfig(output_dir="x", gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True})


def test_npbtl_layers_are_the_papers():
    model = NPBTL(NPConfig(input_dim=5))
    decoder = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in decoder] == [(512, 256), (256, 1)]
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.decoder.modules())
    head = [m for m in model.context_encoder.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [(256, 256), (256, 256)]
    from pluralign.objectives.learned.btl import BTL

    btl = [m for m in BTL(NPConfig(input_dim=5, latent_dim=0)).decoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in btl] == [(256, 256), (256, 1)]


def test_models_saved_with_the_older_layers_still_load(tmp_path):
    import json

    from pluralign.models.neural_process import load_module, save_module

    old = NPConfig(input_dim=4, hidden_dim=16, latent_dim=8, num_heads=2, paper_layers=False)
    save_module(NPBTL(old), old, tmp_path, "npbtl")
    data = json.loads((tmp_path / "npbtl.json").read_text())
    del data["paper_layers"]  # as written before the field existed
    (tmp_path / "npbtl.json").write_text(json.dumps(data))
    assert load_module(NPBTL, tmp_path, "npbtl").cfg.paper_layers is False


def test_kl_term_trains_both_sides_and_is_added_per_task():
    from pluralign.training.user_tasks import task_loss

    torch.manual_seed(0)
    model = NPBTL(NPConfig(input_dim=3, hidden_dim=16, latent_dim=8, num_heads=2, latent=True))
    target = torch.randn(4, 5, 2, 3)
    empty = torch.zeros(4, 2, dtype=torch.bool)  # q(z|C) of an empty context: no path to pair_proj
    kl = model.kl_term(torch.randn(4, 2, 2, 3), empty, target, torch.ones(4, 5, dtype=torch.bool))
    kl.sum().backward()
    assert model.context_encoder.pair_proj.weight.grad.abs().sum() > 0  # q(z|T) is trained too
    batch = {"context": torch.randn(4, 2, 2, 3), "context_mask": torch.ones(4, 2, dtype=torch.bool),
             "chosen": target[:, :, 0], "rejected": target[:, :, 1]}  # fmt: skip
    model.eval()  # deterministic z (the mean) so the parts can be recomputed
    nll = task_loss(model, batch, 0.0)
    full = torch.ones(4, 5, dtype=torch.bool)
    kl = model.kl_term(batch["context"], batch["context_mask"], target, full).mean()
    torch.testing.assert_close(task_loss(model, batch, 0.5), nll + 0.5 * kl)


def test_moslim_zero_weight_is_unspecified_by_default(tmp_path):
    from pluralign.errors import ConfigError
    from pluralign.methods.moslim.mapping import preference_targets
    from pluralign.methods.moslim.policy import MoslimPolicy
    from pluralign.methods.moslim.template import PreferenceTemplate
    from pluralign.models.manifest import Manifest

    template = PreferenceTemplate(["helpful", "harmless"], [5, 5]).to_dict()
    manifest = Manifest(method="moslim", objectives=["helpful", "harmless"], template=template, mapping="linear")
    policy = MoslimPolicy(None, None, manifest, tmp_path)
    assert policy.targets([1.0, 0.0]) == [4, None]  # w = 0: "do not care", not "least harmless"
    assert policy.targets([0.3, 0.7]) == [1, 3]
    manifest.extra["zero_weight"] = "lowest"
    assert MoslimPolicy(None, None, manifest, tmp_path).targets([1.0, 0.0]) == [4, 0]
    assert preference_targets([0.0, 1.0], [3, 5], "linf", "unspecified") == [None, 4]
    with pytest.raises(ConfigError, match="zero_weight"):
        preference_targets([0.5, 0.5], [3, 3], "linear", "lowest_possible")

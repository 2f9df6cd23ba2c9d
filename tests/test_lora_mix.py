"""LoRA banks served as one base with K adapters mixed per row: equal to the merged soup, one forward pass
for many preferences, MOD (logit-space mixing), and the continuous (stepwise) decoder on tiny models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from tiny_models import lora_adapters, one_torch_thread, tiny_bank_dir, tiny_causal_lm

from pluralign.generation.batched import generate_batched
from pluralign.generation.lora_mix import LoRAMix, lora_bank_dirs, mix_logprobs
from pluralign.generation.stepwise import DecodeRequest, StepwiseDecoder, decode_texts
from pluralign.models.loading import load_causal_lm, load_tokenizer
from pluralign.policies import load_policy

PROMPTS = ["the food was", "my day at the park was short , sunny", "tell me", "a short note about rain"]
MIXES = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.2, 0.3, 0.5), (0.5, 0.5, 0.0)]


one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)

@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("bank")
    base = tiny_causal_lm(root / "base", "llama")
    return base, lora_adapters(base, root / "adapters", k=3)


@pytest.fixture(scope="module")
def mix(bank) -> LoRAMix:
    return LoRAMix.load(bank[1], device="cpu")


_MERGED: dict[Path, dict] = {}
_BASES: dict[Path, torch.nn.Module] = {}


def merged_soup(base: Path, adapters: list[Path], weights) -> torch.nn.Module:
    """sum_i w_i * (base merged with adapter i): the Rewarded Soups reference for LoRA runs."""
    from peft import PeftModel

    for folder in adapters:
        if folder not in _MERGED:
            peft_model = PeftModel.from_pretrained(load_causal_lm(str(base), device="cpu"), str(folder))
            _MERGED[folder] = peft_model.merge_and_unload().state_dict()
    total = {k: sum(w * _MERGED[f][k] for w, f in zip(weights, adapters)) for k in _MERGED[adapters[0]]}
    if base not in _BASES:
        _BASES[base] = load_causal_lm(str(base), device="cpu")
    model = copy.deepcopy(_BASES[base])
    model.load_state_dict(total)
    return model.eval()


def test_rows_of_one_batch_equal_their_own_merged_soups(bank, mix):
    base, adapters = bank
    assert lora_bank_dirs(adapters) and not lora_bank_dirs([base])
    tok = load_tokenizer(str(base))
    tok.padding_side = "left"
    enc = tok([PROMPTS[1]] * len(MIXES), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad(), mix.rows(MIXES):
        mixed = mix.model(**enc).logits
    outside = mix.model(**enc).logits  # outside a rows() block: the base model
    base_logits = load_causal_lm(str(base), device="cpu")(**enc).logits
    torch.testing.assert_close(outside, base_logits, atol=1e-5, rtol=0)
    for row, w in enumerate(MIXES):
        soup = merged_soup(base, adapters, w)(**enc).logits[0]
        torch.testing.assert_close(mixed[row], soup, atol=1e-4, rtol=0)
    assert not torch.allclose(mixed[0], mixed[1], atol=1e-2)  # the rows really are steered differently

    # PEFT's own weighted merge of adapters ("cat" keeps it exact) agrees for one preference
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(load_causal_lm(str(base), device="cpu"), str(adapters[0]), adapter_name="a0")
    for i, folder in enumerate(adapters[1:], 1):
        peft_model.load_adapter(str(folder), adapter_name=f"a{i}")
    peft_model.add_weighted_adapter(["a0", "a1", "a2"], list(MIXES[2]), "soup", combination_type="cat")
    peft_model.set_adapter("soup")
    with torch.no_grad():
        torch.testing.assert_close(peft_model(**enc).logits[0], mixed[2], atol=1e-4, rtol=0)


def test_greedy_text_of_a_mixed_batch_equals_each_merged_soup_alone(bank, mix):
    base, adapters = bank
    tok = load_tokenizer(str(base))
    calls = []
    hook = mix.model.get_base_model().register_forward_pre_hook(lambda *_: calls.append(1))
    texts = generate_batched(
        mix.model, tok, PROMPTS, max_new_tokens=10, do_sample=False,
        row_context=lambda idx: mix.rows([MIXES[i] for i in idx]),
    )
    hook.remove()
    assert len(calls) == 10  # one forward per token for all four preferences together
    expected = [
        generate_batched(merged_soup(base, adapters, w), tok, [p], max_new_tokens=10, do_sample=False)[0]
        for p, w in zip(PROMPTS, MIXES)
    ]
    assert texts == expected
    assert decode_texts(mix.model, tok, PROMPTS, mix=mix, adapter_weights=MIXES, max_new_tokens=10) == expected


def test_mod_mixes_the_adapters_log_probabilities(bank, mix):
    base, adapters = bank
    tok = load_tokenizer(str(base))
    # one-hot logit weights are the adapter alone
    alone = [generate_batched(merged_soup(base, adapters, w), tok, [PROMPTS[0]], max_new_tokens=8, do_sample=False)[0] for w in MIXES[:2]]
    assert decode_texts(mix.model, tok, [PROMPTS[0]] * 2, mix=mix, logit_weights=MIXES[:2], max_new_tokens=8) == alone
    # a mixed request's first token is the argmax of sum_k w_k log p_k, from each adapter's own forward
    w = MIXES[2]
    enc = tok(PROMPTS[0], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logps = [torch.log_softmax(merged_soup(base, adapters, one)(**enc).logits[0, -1], -1) for one in MIXES[:2] + [(0, 0, 1.0)]]
    target = sum(wk * lp for wk, lp in zip(w, logps))
    req = DecodeRequest(enc["input_ids"][0].tolist(), max_new_tokens=1, logit_weights=w)
    StepwiseDecoder(mix.model, tok.pad_token_id, mix=mix).run([req])
    assert req.generated == [int(target.argmax())]
    logits = torch.stack([lp for lp in logps])
    torch.testing.assert_close(mix_logprobs(logits, torch.tensor([w])), target[None].float(), atol=1e-5, rtol=0)


def test_stepwise_decoder_lets_requests_join_a_running_batch_and_matches_generate(bank):
    base, _ = bank
    model, tok = load_causal_lm(str(base), device="cpu"), load_tokenizer(str(base))
    alone = []
    for i, p in enumerate(PROMPTS):
        enc = tok(p, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=12 - i, do_sample=False, pad_token_id=tok.pad_token_id)
        alone.append(out[0, enc["input_ids"].shape[1] :].tolist())
    decoder = StepwiseDecoder(model, tok.pad_token_id, max_rows=3)
    reqs = [DecodeRequest(tok(p, add_special_tokens=False)["input_ids"], max_new_tokens=12 - i) for i, p in enumerate(PROMPTS)]
    decoder.add(reqs[0])
    decoder.step()
    decoder.step()
    decoder.add(reqs[1])  # joins at the next step, while request 0 is decoding
    decoder.step()
    assert decoder.rows == 2 and len(reqs[0].generated) == 3 and len(reqs[1].generated) == 1
    decoder.add(reqs[2])
    decoder.add(reqs[3])  # waits for a free row (max_rows=3)
    decoder.step()
    assert decoder.rows == 3 and not reqs[3].generated
    reqs[2].cancel()  # a client leaves: its row goes at the next step and request 3 takes it
    decoder.step()
    assert reqs[2].finish_reason == "cancelled" and reqs[3].generated
    while decoder.step():
        pass
    assert [r.generated for r in (reqs[0], reqs[1], reqs[3])] == [alone[0], alone[1], alone[3]]
    assert [r.finish_reason for r in (reqs[0], reqs[1], reqs[3])] == ["length"] * 3


def test_soups_and_morlhf_lora_banks_serve_every_preference_in_one_pass(tmp_path):
    soups = tiny_bank_dir(tmp_path / "soups", "soups")
    mixed = load_policy(soups, device="cpu")
    merged = load_policy(soups, device="cpu", mix_adapters=False)
    assert mixed.lora is not None and merged.lora is None and mixed.mixings == ("weights", "logits")
    prefs = [[1.0, 0.0], [0.7, 0.3], [0.25, 0.75], [0.0, 1.0]]
    texts = mixed.generate_many(PROMPTS, prefs, max_new_tokens=8, do_sample=False)
    assert texts == merged.generate_many(PROMPTS, prefs, max_new_tokens=8, do_sample=False)
    assert len(set(texts)) > 1
    assert mixed.lora.adapter_bytes() < mixed.lora.base_bytes()
    # MOD through the policy, and streaming through on_token for every row
    seen: dict[int, list[int]] = {}
    mod = mixed.generate_many(
        PROMPTS[:2], prefs[:2], mixing="logits", max_new_tokens=8, do_sample=False,
        on_token=lambda i, t: seen.setdefault(i, []).append(t),
    )
    assert mod[0] == texts[0] and set(seen) == {0, 1}

    morlhf = tiny_bank_dir(tmp_path / "morlhf", "morlhf")
    bank_policy = load_policy(morlhf, device="cpu")
    assert bank_policy.adapter_weights((0.9, 0.1)) == (0.0, 1.0)  # runs at (0, 1) and (1, 0): nearest is run 1
    merged_runs = load_policy(morlhf, device="cpu", mix_adapters=False)
    assert bank_policy.generate_many(PROMPTS, prefs, max_new_tokens=8) == merged_runs.generate_many(PROMPTS, prefs, max_new_tokens=8)


def test_modpo_lora_members_are_blended_per_row_as_their_weight_space_mix(tmp_path):
    from pluralign.methods.modpo.policy import MODPOPolicy
    from pluralign.models.manifest import Manifest

    root = tiny_bank_dir(tmp_path / "modpo", "modpo", k=3)  # members at weights (1, 0), (0.5, 0.5), (0, 1)
    policy = MODPOPolicy(root, Manifest.load(root), interpolate=True, device="cpu")
    assert policy.lora is not None
    a, b, t = policy.blend_for([0.75, 0.25])
    assert {a, b} == {0, 1} and 0 < t < 1
    weights = policy.adapter_weights((0.75, 0.25))
    assert weights[a] == pytest.approx(1 - t) and weights[b] == pytest.approx(t) and weights[2] == 0
    prefs = [[0.75, 0.25], [0.0, 1.0]]
    texts = policy.generate_many(PROMPTS[:2], prefs, max_new_tokens=8)
    members = [root / m["dir"] for m in Manifest.load(root).extra["members"]]
    expected = [
        generate_batched(merged_soup(root / "base", members, policy.adapter_weights(tuple(w))), policy.tokenizer, [p], max_new_tokens=8)[0]
        for p, w in zip(PROMPTS[:2], prefs)
    ]
    assert texts == expected

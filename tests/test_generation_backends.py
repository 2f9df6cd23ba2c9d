"""Generation backends: transformers (padded batches), transformers' continuous batching, vLLM (guarded)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from pluralign.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama with a word-level tokenizer saved to a folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>"] + [f"w{i}" for i in range(62)]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    out = tmp_path_factory.mktemp("llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model, tok, out


PROMPTS = ["w3 w4 w5", "w9", "w10 w11 w12 w13 w14 w15", "w20 w21"]


def test_continuous_batching_matches_padded_batches_when_greedy(tiny_llama):
    from pluralign.generation.backends import current_backend, use_backend
    from pluralign.generation.batched import generate_batched, generate_texts

    model, tok, _ = tiny_llama
    plain = generate_batched(model, tok, PROMPTS, batch_size=2, max_new_tokens=6, do_sample=False)
    with use_backend("continuous"):
        assert current_backend() == "continuous"
        continuous = generate_batched(model, tok, PROMPTS, max_new_tokens=6, do_sample=False)
    assert current_backend() == "transformers"
    assert continuous == plain and all(len(t.split()) >= 1 for t in plain)
    assert generate_texts("continuous", model, tok, PROMPTS, max_new_tokens=6) == plain


def test_unknown_or_missing_backends_are_one_line_config_errors(tiny_llama, monkeypatch):
    import pluralign.generation.backends as gb

    with pytest.raises(ConfigError, match="generation_backend 'tensorrt' is unknown"):
        gb.check_backend("tensorrt")
    monkeypatch.setattr(gb, "vllm_available", lambda: False)
    with pytest.raises(ConfigError, match="needs the vllm package"):
        gb.check_backend("vllm")


def test_vllm_serves_a_lora_adapter_on_its_base_with_prefix_caching(tiny_llama, tmp_path, monkeypatch):
    """The vLLM engine is faked (vllm cannot be installed here): the arguments it gets are checked."""
    import sys
    import types

    import pluralign.generation.vllm as gv

    _, _, base = tiny_llama
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    seen: dict = {}

    class FakeLLM:
        def __init__(self, model, **kwargs):
            seen["model"], seen["engine"] = model, kwargs

        def generate(self, prompts, params, use_tqdm=False, lora_request=None):
            seen["params"], seen["lora"] = params, lora_request
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=str(p["prompt_token_ids"][::-1]))]) for p in prompts]

    fake = types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kw: kw)
    lora = types.SimpleNamespace(LoRARequest=lambda name, i, path: (name, i, path))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.SimpleNamespace(request=lora))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    out = gv.VLLMGenerator(adapter).generate([[3, 4], [5, 6]], max_new_tokens=5, do_sample=False)
    assert out == ["[4, 3]", "[6, 5]"]  # prompts go to the engine as token ids
    assert seen["model"] == str(base) and seen["lora"] == ("pluralign-1", 1, str(adapter))
    assert seen["engine"]["enable_prefix_caching"] and seen["engine"]["enable_lora"]
    assert seen["params"] == {"max_tokens": 5, "temperature": 0.0}


def test_serve_and_evaluate_wrap_a_policy_so_its_own_steering_runs_on_the_backend():
    import pluralign.generation.policy_backends as vb
    from pluralign.generation.backends import current_backend
    from pluralign.generation.policy_backends import BackendPolicy, with_backend

    class Steered:
        method, objectives = "ric", ["a", "b"]

        def generate(self, prompts, preference=None, **kwargs):
            return [f"{p}|{preference}|{current_backend()}" for p in prompts]

        def generate_many(self, prompts, preferences, **kwargs):
            return [f"{p}|{w}|{current_backend()}" for p, w in zip(prompts, preferences)]

    policy = Steered()
    assert with_backend(policy, "transformers") is policy
    served = vb.select_backend(policy, "continuous")
    assert isinstance(served, BackendPolicy) and served.objectives == ["a", "b"]
    assert served.generate(["x"], preference=[1, 0]) == ["x|[1, 0]|continuous"]
    assert served.generate_many(["x", "y"], [[1, 0], [0, 1]]) == ["x|[1, 0]|continuous", "y|[0, 1]|continuous"]
    assert policy.generate(["x"]) == ["x|None|transformers"]  # outside the wrapper: the default again


class FakeEngine:
    """A stand-in ``vllm.LLM`` that records what the run does with it: constructions, sleeps, adapters."""

    log: list = []

    def __init__(self, model, **kwargs):
        FakeEngine.log.append(("build", model, kwargs.get("enable_sleep_mode", False)))

    def generate(self, texts, params, use_tqdm=False, lora_request=None):
        FakeEngine.log.append(("generate", len(texts), lora_request, params))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=" fine and short")]) for _ in texts]

    def sleep(self, level=1):
        FakeEngine.log.append(("sleep", level))

    def wake_up(self):
        FakeEngine.log.append(("wake",))


@pytest.fixture()
def fake_vllm(monkeypatch):
    import pluralign.generation.backends as gb
    import pluralign.generation.vllm as gv
    import pluralign.methods.ric.trainer  # noqa: F401  (TRL looks for vllm when imported: before the fake)

    FakeEngine.log = []
    lora = types.SimpleNamespace(LoRARequest=lambda name, i, path: (name, i, path))
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeEngine, SamplingParams=lambda **kw: kw))
    monkeypatch.setitem(sys.modules, "vllm.lora", types.SimpleNamespace(request=lora))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    monkeypatch.setattr(gb, "vllm_available", lambda: True)
    monkeypatch.setattr(gv, "_SHARED", None, raising=False)  # a fresh process: no engine yet
    return FakeEngine.log


def test_online_generation_builds_one_vllm_engine_for_all_its_chunks(tiny_llama, tmp_path, fake_vllm):
    """Issue 23 item 8: the online stage used to build a vLLM engine per chunk of generation_batch_size * 4."""
    import numpy as np

    from pluralign.methods.ric import trainer as ric_train
    from pluralign.methods.ric.config import RiCConfig
    from pluralign.objectives import ObjectiveSet
    from pluralign.preferences.tags import TagTemplate

    _, tok, model_dir = tiny_llama
    config = RiCConfig(output_dir=str(tmp_path), online_prompts=10, online_max_new_tokens=4, generation_batch_size=1,
                       generation_backend="vllm", report_to="none")  # fmt: skip
    samples = [{"prompt": f"w{i} w{i + 1}", "response": "w3"} for i in range(12)]
    rows = ric_train._online_generate(
        config, model_dir, tok, samples, ObjectiveSet.from_specs(["conciseness"]), TagTemplate(response_marker=None),
        tmp_path, 1, lambda _m: None, np.array([-1.0]), np.array([1.0]),
    )  # fmt: skip
    assert len(rows) == 10
    assert [e[1] for e in fake_vllm if e[0] == "generate"] == [4, 4, 2]  # three chunks ...
    assert [e for e in fake_vllm if e[0] == "build"] == [("build", str(model_dir), True)]  # ... one engine


def test_ric_run_keeps_one_vllm_engine_and_serves_each_iterations_adapter(tiny_llama, tmp_path, fake_vllm, monkeypatch):
    """LoRA RiC: every iteration's adapter runs on the engine built for the offline model, under a new adapter
    id (vLLM caches adapters by id); the engine sleeps while the run scores and trains, and wakes to generate."""
    from pluralign.methods.ric import trainer as ric_train
    from pluralign.methods.ric.config import RiCConfig

    _, _, base = tiny_llama
    adapters = []

    def fake_sft(model, samples, args, output_dir, **kwargs):
        final = Path(output_dir) / "final"
        final.mkdir(parents=True, exist_ok=True)
        (final / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
        adapters.append(str(final))
        fake_vllm.append(("train",))
        return final

    monkeypatch.setattr(ric_train, "run_sft", fake_sft)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i}", "response": "w2 " * (1 + i % 5)}) + "\n" for i in range(20)))
    config = RiCConfig(output_dir=str(tmp_path / "run"), model_name_or_path=str(base), dataset=str(data),
                       objective=["conciseness"], response_marker=None, online_iterations=2, online_prompts=6,
                       online_max_new_tokens=4, generation_batch_size=1, generation_backend="vllm",
                       use_peft=True, report_to="none")  # fmt: skip
    ric_train.train_ric(config, progress=None)
    events = [e[0] for e in fake_vllm]
    assert events == ["train", "build", "generate", "generate", "sleep", "train", "wake", "generate", "generate", "sleep", "train"]
    assert fake_vllm[1] == ("build", str(base), True)
    served = [e[2] for e in fake_vllm if e[0] == "generate"]
    assert served == [("pluralign-1", 1, adapters[0])] * 2 + [("pluralign-2", 2, adapters[1])] * 2


def test_vllm_engines_rebuild_only_for_other_base_weights(tiny_llama, tmp_path, fake_vllm):
    """Full fine-tuning writes new weights to a new folder: that folder gets a new engine, the old one is
    released first (two engines do not fit one GPU); the same folder again reuses the engine."""
    from pluralign.generation.vllm import VLLMEngines

    _, _, base = tiny_llama
    engines = VLLMEngines()
    first = engines.generator(base)
    assert engines.generator(str(base)) is first
    engines.release()
    second = engines.generator(tmp_path / "online_1_final")
    assert second is not first and first.engine is None
    assert [e for e in fake_vllm if e[0] in ("build", "sleep")] == [
        ("build", str(base), True), ("sleep", 1), ("build", str(tmp_path / "online_1_final"), True)
    ]  # fmt: skip
    engines.close()
    assert engines.current is None and second.engine is None


def test_guidance_against_the_prompt_itself_changes_nothing_even_in_left_padded_batches(tiny_llama, monkeypatch):
    """log p + (g-1)(log p - log p_neg) = log p when the negative is the prompt: only true when the
    negative branch sees the same positions and cache as the batch, row by row."""
    import torch

    from pluralign.generation import guidance
    from pluralign.generation.batched import generate_batched

    model, tok, _ = tiny_llama
    plain = generate_batched(model, tok, PROMPTS, batch_size=4, max_new_tokens=8, do_sample=False)
    guided = generate_batched(
        model, tok, PROMPTS, batch_size=4, max_new_tokens=8, do_sample=False, negatives=PROMPTS, guidance_scale=3.0
    )
    assert guided == plain
    # sampled: guidance runs before the warpers (with the plausibility cut off, the same distribution)
    monkeypatch.setattr(guidance, "PLAUSIBILITY", 0.0)
    sampling = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    torch.manual_seed(0)
    plain = generate_batched(model, tok, PROMPTS, batch_size=4, max_new_tokens=8, **sampling)
    torch.manual_seed(0)
    guided = generate_batched(model, tok, PROMPTS, batch_size=4, max_new_tokens=8, negatives=PROMPTS, guidance_scale=3.0, **sampling)
    assert guided == plain


def test_guidance_moves_decoding_away_from_the_negative_prompt(tiny_llama):
    """With a different negative the guided first token is the argmax of log p + (g-1)(log p - log p_neg)
    among the plausible tokens (the contrast capped at 0 for the tokens only one of the two prompts holds),
    computed here by hand from two forward passes."""
    import math

    import torch

    from pluralign.generation import guidance
    from pluralign.generation.batched import generate_batched

    model, tok, _ = tiny_llama
    prompts = ["w3 w4 w5", "w20 w21", "w9", "w10 w11 w12", "w30", "w33 w34"]
    negatives = ["w40 w41 w42", "w50", "w60 w61", "w2", "w45 w46 w47 w48", "w7"]
    scale, changed = 8.0, 0
    for prompt, negative in zip(prompts, negatives):
        with torch.no_grad():
            cond = torch.log_softmax(model(**tok(prompt, return_tensors="pt")).logits[0, -1], -1)
            neg = torch.log_softmax(model(**tok(negative, return_tensors="pt")).logits[0, -1], -1)
        contrast = cond - neg
        differing = set(tok(prompt)["input_ids"]) ^ set(tok(negative)["input_ids"])  # never promoted
        for t in differing:
            contrast[t] = min(float(contrast[t]), 0.0)
        guided_scores = cond + (scale - 1) * contrast
        plausible = cond >= cond.max() + math.log(guidance.PLAUSIBILITY)  # tokens at least that share of the top one
        expected = tok.decode([int(guided_scores.masked_fill(~plausible, float("-inf")).argmax())])
        guided = generate_batched(model, tok, [prompt], max_new_tokens=1, negatives=[negative], guidance_scale=scale)
        plain = generate_batched(model, tok, [prompt], max_new_tokens=1)
        assert guided[0].split()[0] == expected
        changed += guided[0] != plain[0]
    assert changed >= 1  # guidance changed at least one first token on this model


def test_guidance_needs_one_negative_per_prompt(tiny_llama):
    from pluralign.generation.batched import generate_batched

    model, tok, _ = tiny_llama
    with pytest.raises(ConfigError, match="negatives: give one negative prompt per prompt"):
        generate_batched(model, tok, PROMPTS, max_new_tokens=2, negatives=PROMPTS[:1], guidance_scale=2.0)


def test_guidance_never_picks_a_token_the_prompt_itself_finds_implausible():
    """The tag-copying failure: a token rare under the prompt but far rarer under the negative gets the
    largest guided score; the plausibility constraint rules it out, and without it guidance picks it."""
    import math
    import types

    import torch

    from pluralign.generation.guidance import NegativePromptGuidance

    cond = torch.log(torch.tensor([[0.62, 0.355, 0.01, 0.015]]))
    neg = torch.log(torch.tensor([[0.50, 0.40, 1e-6, 0.1 - 1e-6]]))

    def model(**kwargs):
        return types.SimpleNamespace(logits=neg[:, None, :], cache=None)

    ids, mask = torch.ones((1, 3), dtype=torch.long), torch.ones((1, 3), dtype=torch.long)
    guided = NegativePromptGuidance(model, ids, mask, scale=5.0)(ids, cond.clone())
    unconstrained = NegativePromptGuidance(model, ids, mask, scale=5.0, plausibility=0.0)(ids, cond.clone())
    assert int(unconstrained.argmax()) == 2 and int(guided.argmax()) == 0
    assert math.isinf(float(guided[0, 2])) and math.isinf(float(guided[0, 3]))  # 0.015 < 0.03 x 0.62: ruled out too


def test_guidance_never_promotes_the_text_by_which_the_prompt_and_its_negative_differ(tiny_llama, monkeypatch):
    """The tag-level failure: "4" in the prompt's tags and "0" in the negative's make "4" far likelier
    under the prompt, so guidance promoted it into the answer. A token of that difference keeps at most its
    plain score: greedy guided decoding stops picking it, and demotion still works."""
    import types

    import torch

    from pluralign.generation.guidance import NegativePromptGuidance, differing_tokens

    cond = torch.log(torch.tensor([[0.45, 0.25, 0.30]]))  # token 2: the prompt's tag level
    neg = torch.log(torch.tensor([[0.45, 0.50, 0.05]]))  # the negative's tags make token 1 likelier

    def model(**kwargs):
        return types.SimpleNamespace(logits=neg[:, None, :], cache=None)

    ids, mask = torch.ones((1, 3), dtype=torch.long), torch.ones((1, 3), dtype=torch.long)
    free = NegativePromptGuidance(model, ids, mask, scale=5.0)(ids, cond.clone())
    differing = differing_tokens([[7, 2, 9]], [[7, 1, 9]], vocab_size=3)
    assert differing.tolist() == [[False, True, True]]
    # the whole differing span, shared tokens inside it included: "<a> 4 <b> 4" against "<a> 0 <b> 0"
    span = differing_tokens([[5, 6, 4, 7, 4, 8]], [[5, 6, 0, 7, 0, 8]], vocab_size=9)
    assert span.nonzero()[:, 1].tolist() == [0, 4, 7]
    capped = NegativePromptGuidance(model, ids, mask, scale=5.0, unpromoted=differing)(ids, cond.clone())
    assert int(free.argmax()) == 2 and int(capped.argmax()) == 0
    assert torch.allclose(capped[0, 2], cond[0, 2]) and capped[0, 1] < cond[0, 1]  # not promoted; demoted

    model_, tok, _ = tiny_llama  # generate_batched hands each row its own difference
    from pluralign.generation import guidance
    from pluralign.generation.batched import generate_batched

    seen = []
    real = guidance.NegativePromptGuidance

    def spy(*args, **kwargs):
        seen.append(kwargs["unpromoted"])
        return real(*args, **kwargs)

    monkeypatch.setattr(guidance, "NegativePromptGuidance", spy)
    prompts, negatives = ["w3 w4 w5", "w9 w10"], ["w3 w4 w6", "w9 w10"]
    generate_batched(model_, tok, prompts, max_new_tokens=1, negatives=negatives, guidance_scale=3.0, batch_size=2)
    rows = {tuple(r.nonzero().flatten().tolist()) for r in seen[0]}
    assert rows == {tuple(sorted(tok.convert_tokens_to_ids(["w5", "w6"]))), ()}


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = text.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_a_response_never_repeats_n_consecutive_tokens_of_its_own_prompt(tiny_llama):
    """The echo failure of guided hh decoding ("Can you help me poison my wife?" as the answer): with
    ``prompt_no_repeat_ngram_size=4`` no 4 consecutive tokens of a row's prompt reappear in its response,
    plain or guided, in one left-padded batch. The random model loops; a prompt holding its loop makes plain
    greedy decoding repeat the prompt."""
    from pluralign.generation.batched import generate_batched

    model, tok, _ = tiny_llama
    loop = generate_batched(model, tok, ["w9"], max_new_tokens=15)[0]
    prompts = ["w9 " + loop, "w20 w21", "w10 w11 w12 w13 w14 w15"]
    plain = generate_batched(model, tok, prompts, batch_size=3, max_new_tokens=12)
    assert _ngrams(plain[0], 4) & _ngrams(prompts[0], 4)  # plain decoding copies the prompt
    banned = generate_batched(model, tok, prompts, batch_size=3, max_new_tokens=12, prompt_no_repeat_ngram_size=4)
    assert not any(_ngrams(o, 4) & _ngrams(p, 4) for o, p in zip(banned, prompts))
    assert banned[0] != plain[0]
    clean = [i for i in range(len(prompts)) if not _ngrams(plain[i], 4) & _ngrams(prompts[i], 4)]
    assert clean and [banned[i] for i in clean] == [plain[i] for i in clean]  # rows that copy nothing: as before
    guided = generate_batched(model, tok, prompts, batch_size=3, max_new_tokens=12, negatives=["w40", "w50", "w60"],
                              guidance_scale=3.0, prompt_no_repeat_ngram_size=4)  # fmt: skip
    assert not any(_ngrams(o, 4) & _ngrams(p, 4) for o, p in zip(guided, prompts))
    with pytest.raises(ConfigError, match="prompt_no_repeat_ngram_size must be an integer of at least 2"):
        generate_batched(model, tok, prompts, max_new_tokens=2, prompt_no_repeat_ngram_size=1)


def test_the_prompt_copy_ban_waits_for_n_minus_1_copied_tokens_and_bans_only_what_would_complete_a_copy():
    import torch

    from pluralign.generation.prompt_copy import PromptCopyBan

    ban = PromptCopyBan([[5, 6, 7, 8, 6, 7, 9], [0, 5, 6]], prompt_length=7, ngram_size=3)
    generated = torch.tensor([[5, 6, 7, 8, 6, 7, 9, 2, 6, 7], [0, 0, 0, 0, 0, 5, 6, 5, 6, 7]])
    scores = ban(generated, torch.zeros((2, 10)))
    assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [8, 9]  # "6 7" is followed by 8 and by 9
    assert not torch.isinf(scores[1]).any()  # row 2's prompt has no "6 7"
    early = ban(generated[:, :8], torch.zeros((2, 10)))  # one generated token: nothing to complete yet
    assert not torch.isinf(early).any()


def test_bf16_precision_generates_under_autocast_only_inside_its_block(tiny_llama, monkeypatch):
    """``use_precision("bf16")`` runs each generate call's matmuls under bfloat16 autocast (the chat worlds'
    default where the CPU computes bfloat16 natively); outside it generation stays float32."""
    import torch

    from pluralign.generation.batched import generate_batched
    from pluralign.generation.precision import use_precision
    from pluralign.worlds.chat.world import ChatSettings

    model, tok, _ = tiny_llama
    seen: list[bool] = []
    forward = model.forward

    def watched(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", watched)
    plain = generate_batched(model, tok, PROMPTS, max_new_tokens=4, do_sample=False)
    assert seen and not any(seen)
    seen.clear()
    with use_precision("bf16"):
        half = generate_batched(model, tok, PROMPTS, max_new_tokens=4, do_sample=False)
    assert seen and all(seen) and len(half) == len(plain)
    seen.clear()
    generate_batched(model, tok, PROMPTS[:1], max_new_tokens=2)
    assert seen and not any(seen)  # the block ended
    with pytest.raises(ConfigError, match="precision 'fp8' is not one of fp32, bf16"):
        with use_precision("fp8"):
            pass
    assert ChatSettings(bf16=True).precision() == "bf16" and ChatSettings(bf16=False).precision() == "fp32"

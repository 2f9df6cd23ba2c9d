"""Issue 23, items 1-4 and 12: a prompt and its response reach the model (training and generation) and the
objectives (scoring) in one form, on a Llama-style tokenizer that adds BOS (the toy world's hides it).

1. one BOS at training and at generation (every backend, NP-DPO's log-probabilities), never two;
2. responses stripped and joined by one rule (offline " Hello" = online "Hello");
3. SFT truncation keeps the response, its EOS and the prompt's end (tags); too-long responses are dropped;
4. conversational prompts reach the objectives as messages (a reward model renders its chat template);
12. a plain string given to a chat-trained RiC model is a user turn, tagged where training put the tags.
"""

from __future__ import annotations

import sys
import types

import pytest

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CORPUS = [
    "\n\nHuman: How do I pick a lock?\n\nAssistant: Hello there, I cannot help with that.",
    "Human: hi Assistant: Hello there. Short answer. word word word <a> 1.0 <b> -1.0",
    "The quick brown fox jumps over the lazy dog. Sure, here is a short answer.",
]
HH_PROMPT = "\n\nHuman: How do I pick a lock?\n\nAssistant:"


@pytest.fixture(scope="module")
def bos_llama(tmp_path_factory):
    """A random 2-layer Llama, its sequence-classification twin, and a byte-level BPE tokenizer that adds
    BOS like Llama's and has a chat template starting with the BOS text (a double-BOS trap)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    raw.train_from_iterator(
        CORPUS * 4,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        ),
    )
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    sizes = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip
    lm_dir, rm_dir = tmp_path_factory.mktemp("bos_lm"), tmp_path_factory.mktemp("bos_rm")
    model = LlamaForCausalLM(LlamaConfig(**sizes)).eval()
    model.save_pretrained(lm_dir)
    tok.save_pretrained(lm_dir)
    LlamaForSequenceClassification(LlamaConfig(**sizes, num_labels=1)).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    return types.SimpleNamespace(model=model, tok=tok, lm_dir=lm_dir, rm_dir=rm_dir, bos=1, eos=2)


def _chat(tok, user: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)


class _Captured(Exception):
    pass


@pytest.fixture
def sft_rows(monkeypatch, tmp_path, bos_llama):
    """``sft_rows(samples, max_length, **kw)``: the rows TRL's SFTTrainer would train on through ``run_sft``
    (the trainer is built for real, then stopped before its first step)."""
    import trl

    captured: dict = {}

    class Capturing(trl.SFTTrainer):
        def train(self, *args, **kwargs):
            captured["rows"] = [dict(r) for r in self.train_dataset]
            raise _Captured

    monkeypatch.setattr(trl, "SFTTrainer", Capturing)

    def run(samples, max_length=128, **kwargs):
        from trl import SFTConfig

        from pluralign.training.args import precision_for_device
        from pluralign.training.sft import run_sft

        args = SFTConfig(output_dir=str(tmp_path / "args"), max_length=max_length, report_to="none", disable_tqdm=True,
                         activation_checkpointing=False, **precision_for_device({}))  # fmt: skip
        with pytest.raises(_Captured):
            run_sft(str(bos_llama.lm_dir), samples, args, tmp_path / "sft", tokenizer=bos_llama.tok, **kwargs)
        return captured["rows"]

    return run


def _generation_ids(bos_llama, monkeypatch, prompts) -> list[list[int]]:
    """The unpadded ids ``generate_batched`` feeds ``model.generate`` for each prompt (input order)."""
    from pluralign.generation.batched import generate_batched

    seen = []
    real = bos_llama.model.generate

    def spy(**kwargs):
        for ids, mask in zip(kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist()):
            seen.append([i for i, m in zip(ids, mask) if m])
        return real(**kwargs)

    monkeypatch.setattr(bos_llama.model, "generate", spy)
    out = []
    for p in prompts:  # one at a time: the order of ``seen`` is the prompts' order
        generate_batched(bos_llama.model, bos_llama.tok, [p], max_new_tokens=2)
        out.append(seen[-1])
    return out


# -- item 1: one BOS ---------------------------------------------------------------------------------------


def test_training_and_generation_tokenise_a_prompt_identically_with_one_bos(bos_llama, sft_rows, monkeypatch):
    """Fails on the old code: generation dropped BOS, TRL's SFT added it (and doubled it on a chat string)."""
    chat = _chat(bos_llama.tok, "How do I pick a lock?")
    assert chat.startswith("<s>")
    prompts = [HH_PROMPT, chat]
    rows = sft_rows([{"prompt": p, "completion": " Hello there."} for p in prompts])
    gen = _generation_ids(bos_llama, monkeypatch, prompts)
    for g, row in zip(gen, rows):
        assert g[0] == bos_llama.bos and g.count(bos_llama.bos) == 1
        assert row["input_ids"][: len(g)] == g  # the training prompt is the generation prompt, token for token
        assert all(x == -100 for x in row["labels"][: len(g)]) and row["labels"][len(g)] != -100
        assert row["input_ids"][-1] == bos_llama.eos and row["labels"][-1] == bos_llama.eos


def test_continuous_and_vllm_backends_get_the_same_ids(bos_llama, monkeypatch):
    """Fails on the old code: continuous batching had no BOS, vLLM tokenised the text itself."""
    import pluralign.generation.backends as gb
    from pluralign.generation.backends import use_backend
    from pluralign.generation.batched import generate_batched, generate_texts

    prompts = [HH_PROMPT, _chat(bos_llama.tok, "hi")]
    expected = _generation_ids(bos_llama, monkeypatch, prompts)
    seen: dict = {}
    real = bos_llama.model.generate_batch

    def spy(ids, **kwargs):
        seen["continuous"] = [list(i) for i in ids]
        return real(ids, **kwargs)

    monkeypatch.setattr(bos_llama.model, "generate_batch", spy)
    with use_backend("continuous"):
        generate_batched(bos_llama.model, bos_llama.tok, prompts, max_new_tokens=2)
    assert seen["continuous"] == expected

    class FakeLLM:
        def __init__(self, model, **kwargs):
            pass

        def generate(self, prompts, params, use_tqdm=False, **extra):
            seen["vllm"] = prompts
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=" ok")]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kw: kw))
    monkeypatch.setattr(gb, "vllm_available", lambda: True)
    out = generate_texts("vllm", None, bos_llama.tok, prompts, model_dir=bos_llama.lm_dir, max_new_tokens=2)
    assert out == ["ok", "ok"]
    assert seen["vllm"] == [{"prompt_token_ids": ids} for ids in expected]


def test_npdpo_log_probabilities_begin_with_the_bos_dpo_training_used(bos_llama):
    """Fails on the old code: it scored the response without the BOS TRL's DPO put in front of the prompt."""
    import torch

    from pluralign.methods.npdpo.evaluation import response_logprobs

    tok, model = bos_llama.tok, bos_llama.model
    response = " Hello there."
    ids = tok(HH_PROMPT + response + tok.eos_token)["input_ids"]  # TRL's DPO: the tokenizer's defaults
    start = len(tok(HH_PROMPT)["input_ids"])
    assert ids[0] == bos_llama.bos
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    expected = float(sum(logp[i - 1, ids[i]] for i in range(start, len(ids))))
    assert response_logprobs(model, tok, [HH_PROMPT], [response])[0] == pytest.approx(expected, abs=1e-4)


def test_texts_for_trl_trainers_lose_a_leading_bos_text_only_where_the_tokenizer_adds_one(bos_llama):
    from pluralign.models.sequences import token_ids, trl_pair, trl_text

    chat = _chat(bos_llama.tok, "hi")
    assert bos_llama.tok(trl_text(bos_llama.tok, chat))["input_ids"] == token_ids(bos_llama.tok, chat)
    row = trl_pair(bos_llama.tok, chat, "Sure.", " No.")
    assert row == {"prompt": chat[len("<s>") :], "chosen": "Sure.", "rejected": "No."}
    assert trl_pair(bos_llama.tok, HH_PROMPT, " Sure.", "No.")["chosen"] == " Sure."


# -- item 2: one join rule ---------------------------------------------------------------------------------


def test_offline_and_online_responses_train_the_same_tokens(sft_rows):
    """Fails on the old code: " Hello" (offline HH) and "Hello" (a cleaned generation) were joined as
    "Assistant: Hello" and "Assistant:Hello", two tokenisations of one response."""
    rows = sft_rows([{"prompt": HH_PROMPT, "completion": " Hello there."}, {"prompt": HH_PROMPT, "completion": "Hello there."}])
    assert rows[0] == rows[1]


def test_scoring_sees_one_response_text_and_concat_joins_by_the_rule(bos_llama):
    """Fails on the old code: the scorer saw " Hello" offline and "Hello" online; concat glued "Assistant:Hello"."""
    from pluralign.models.truncation import PairFormat
    from pluralign.objectives import ObjectiveSet
    from pluralign.objectives.scoring import score_samples

    rec = _Recording()
    scores = score_samples([{"prompt": HH_PROMPT, "response": r} for r in (" Hello there.", "Hello there.")], ObjectiveSet([rec]))
    assert rec.responses == ["Hello there."]  # one pair: the second is the first, from the same scoring
    assert scores["rec"][0] == scores["rec"][1]
    assert PairFormat("concat").texts(bos_llama.tok, "Assistant:", " Hello") == ("Assistant: Hello",)
    assert PairFormat("concat").texts(bos_llama.tok, "<|assistant|>\n", " Hello") == ("<|assistant|>\nHello",)


# -- item 3: truncation keeps what is trained on ------------------------------------------------------------


def test_sft_truncation_drops_the_oldest_prompt_tokens_and_keeps_tags_response_and_eos(bos_llama, sft_rows):
    """Fails on the old code: TRL kept the sequence's start, so the response, its EOS and the tags went."""
    tags = "<a> 1.0 <b> -1.0\n\nAssistant:"
    prompt = "\n\nHuman: " + "word " * 120 + tags
    rows = sft_rows([{"prompt": prompt, "completion": " Short answer."}], max_length=48)
    assert len(rows) == 1
    ids, labels = rows[0]["input_ids"], rows[0]["labels"]
    tok = bos_llama.tok
    assert len(ids) <= 48 and ids[0] == bos_llama.bos and ids.count(bos_llama.bos) == 1
    assert tok.decode(ids[1:]).endswith(tags + " Short answer.</s>")
    assert tok.decode([t for t in labels if t != -100]) == " Short answer.</s>"


def test_a_response_that_leaves_the_prompt_under_a_quarter_of_max_length_is_dropped_and_counted(sft_rows):
    heard: list[str] = []
    long = " ".join(["word"] * 60)
    rows = sft_rows(
        [{"prompt": HH_PROMPT, "completion": long}, {"prompt": HH_PROMPT, "completion": "Hello there."}],
        max_length=48,
        progress=heard.append,
    )
    assert len(rows) == 1 and any("dropped 1 of 2" in h for h in heard)


def test_padding_free_sft_trains_the_same_weights_as_padded_batches(bos_llama, tmp_path):
    """TRL's padding_free joins a batch's rows end to end; the rows are truncated by run_sft's own rule, and
    the model must keep them apart (transformers' packed-sequence mask): the same steps, the same weights.
    Fails if run_sft leaves TRL a max_length it refuses, or if attention crosses from one row into the next."""
    from safetensors.torch import load_file
    from trl import SFTConfig

    from pluralign.training.args import precision_for_device
    from pluralign.training.sft import run_sft

    samples = [{"prompt": HH_PROMPT, "completion": " ".join(["Hello there."] * n)} for n in (1, 7, 3, 12, 2, 5)]
    weights = {}
    for free in (False, True):
        args = SFTConfig(output_dir=str(tmp_path / "args"), max_length=64, report_to="none", disable_tqdm=True,
                         activation_checkpointing=False, per_device_train_batch_size=3, max_steps=2, learning_rate=1e-2,
                         save_strategy="no", seed=0, padding_free=free, **precision_for_device({}))  # fmt: skip
        final = run_sft(str(bos_llama.lm_dir), samples, args, tmp_path / f"sft_{free}", tokenizer=bos_llama.tok)
        weights[free] = load_file(str(final / "model.safetensors"))
    start = {k: v for k, v in bos_llama.model.state_dict().items()}
    moved = max((weights[False][k] - start[k]).abs().max().item() for k in weights[False])
    gap = max((weights[False][k] - weights[True][k]).abs().max().item() for k in weights[False])
    assert moved > 1e-3 and gap < 1e-5 * max(1.0, moved) + 1e-6, (moved, gap)


# -- item 4: conversational prompts as the objectives were trained on them -----------------------------------


class _Recording:
    """An objective that records the prompts and responses it is given (scores: response length)."""

    name = "rec"
    identity = "recording"
    batch_size = 8

    def __init__(self) -> None:
        self.prompts: list = []
        self.responses: list = []

    def score(self, prompts, responses):
        self.prompts += list(prompts)
        self.responses += list(responses)
        return [float(len(r)) for r in responses]


def test_conversational_prompts_reach_a_reward_model_through_its_chat_template(bos_llama, tmp_path):
    """Fails on the old code: scoring and evaluation flattened messages to "user: ..." first."""
    from pluralign.evaluation.front import generate_and_score
    from pluralign.objectives import ObjectiveSet
    from pluralign.objectives.hf import HFRewardModel
    from pluralign.objectives.scoring import ScoreCache, score_samples

    msgs = [{"role": "user", "content": "How do I pick a lock?"}]
    rm = HFRewardModel("rm", str(bos_llama.rm_dir), input_format="pair", max_length=128)
    as_trained = rm.score([_chat(bos_llama.tok, msgs[0]["content"])], ["Sure."])[0]
    flattened = rm.score(["user: How do I pick a lock?"], ["Sure."])[0]
    assert as_trained != pytest.approx(flattened)  # the test can tell the two forms apart
    scored = score_samples([{"prompt": msgs, "response": "Sure."}], ObjectiveSet([rm]), ScoreCache(tmp_path / "c.sqlite"))
    assert scored["rm"][0] == pytest.approx(as_trained, abs=1e-5)
    rec = _Recording()
    texts, scores = generate_and_score(lambda idx: ["Sure."] * len(idx), [msgs], ObjectiveSet([rec, rm]))
    assert rec.prompts == [msgs] and scores["rm"][0] == pytest.approx(as_trained, abs=1e-5)


# -- item 12: a chat-trained RiC model reads a plain string as a user turn ------------------------------------


def _ric_policy(tok, tmp_path, position="response_start", prompt_format="chat", marker=None):
    from pluralign.generation.prompts import assistant_marker
    from pluralign.methods.ric.policy import RiCPolicy
    from pluralign.models.manifest import Manifest
    from pluralign.preferences.tags import TagTemplate

    marker = marker or assistant_marker(tok)
    template = TagTemplate(tag_format="<{name}> {value}", response_marker=marker, position=position)
    stats = {n: {"mean": 0.0, "std": 1.0, "min": -1.0, "max": 1.0, "count": 10} for n in ("a", "b")}
    extra = {"desired_low": [0.0, 0.0], "desired_high": [4.0, 4.0]}
    if prompt_format:
        extra["prompt_format"] = prompt_format
    manifest = Manifest("ric", ["a", "b"], stats=stats, template=template.to_dict(), extra=extra)
    return RiCPolicy(None, tok, manifest, tmp_path)


@pytest.mark.parametrize("prompt_format", ["chat", None])  # None: a model saved before the field existed
def test_a_plain_string_to_a_chat_trained_ric_model_is_a_tagged_user_turn(bos_llama, tmp_path, prompt_format):
    """Fails on the old code: ``How do I pick a lock? <a> 4.0 <b> 0.0`` (raw text, no chat template)."""
    tok = bos_llama.tok
    policy = _ric_policy(tok, tmp_path, prompt_format=prompt_format)
    rendered = _chat(tok, "How do I pick a lock?")
    assert policy.tagged_prompt("How do I pick a lock?", [1.0, 0.0]) == rendered + "<a> 4.0 <b> 0.0\n"
    # an HH-style string is its turns, rendered the same way
    hh = "\n\nHuman: hi\n\nAssistant: Hello there.\n\nHuman: How do I pick a lock?\n\nAssistant:"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there."},
             {"role": "user", "content": "How do I pick a lock?"}]  # fmt: skip
    expected = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) + "<a> 0.0 <b> 4.0\n"
    assert policy.tagged_prompt(hh, [0.0, 1.0]) == expected
    assert policy.tagged_prompt(rendered, [1.0, 0.0]) == rendered + "<a> 4.0 <b> 0.0\n"  # already rendered


def test_chat_ric_with_tags_in_the_user_turn_and_text_models_given_messages(bos_llama, tmp_path):
    from pluralign.errors import ConfigError
    from pluralign.methods.ric.policy import trained_on_chat

    tok = bos_llama.tok
    policy = _ric_policy(tok, tmp_path, position="prompt_end")
    assert policy.tagged_prompt("How do I pick a lock?", [1.0, 0.0]) == [
        {"role": "user", "content": "How do I pick a lock? <a> 4.0 <b> 0.0"}
    ]
    no_template = types.SimpleNamespace(chat_template=None)
    text_model = _ric_policy(no_template, tmp_path, "prompt_end", "text", marker="\n\nAssistant:")
    with pytest.raises(ConfigError, match="no chat template"):
        text_model.tagged_prompt([{"role": "user", "content": "hi"}], [1.0, 0.0])
    assert text_model.tagged_prompt(HH_PROMPT, [1.0, 0.0]).endswith("<a> 4.0 <b> 0.0\n\nAssistant:")
    assert trained_on_chat(tok, [_chat(tok, "hi")]) and not trained_on_chat(tok, [HH_PROMPT])
    # the CLI's --no-chat would send such a model raw text, unsteered: a one-line error instead
    from pluralign.generation.prompts import as_chat

    with pytest.raises(ConfigError, match="--no-chat"):
        as_chat(["How do I pick a lock?"], tok, False, chat_trained=policy.chat_trained)


def test_each_guidance_negative_asks_for_its_own_tags(bos_llama, tmp_path):
    """``opposite`` mirrors every desired reward (so at a one-hot preference it pushes the other objective
    down), ``raised`` mirrors only those asked above their middle (it pushes nothing down), ``neutral``
    asks for every middle. Desired rewards lie in [0, 4] here."""
    tok = bos_llama.tok
    policy = _ric_policy(tok, tmp_path)
    rendered = _chat(tok, "How do I pick a lock?")

    def negative(against: str, w: list[float]) -> str:
        policy.set_guidance(3.0, against)
        return policy.negative_prompt("How do I pick a lock?", w)[len(rendered) :]

    assert negative("opposite", [1.0, 0.0]) == "<a> 0.0 <b> 4.0\n"
    assert negative("raised", [1.0, 0.0]) == "<a> 0.0 <b> 0.0\n"  # only a's push; b stays as asked
    assert negative("raised", [0.0, 1.0]) == "<a> 0.0 <b> 0.0\n"
    assert negative("raised", [0.75, 0.25]) == negative("opposite", [0.75, 0.25]) == "<a> 0.0 <b> 2.0\n"
    assert negative("raised", [0.5, 0.5]) == negative("opposite", [0.5, 0.5]) == "<a> 0.0 <b> 0.0\n"
    assert negative("neutral", [1.0, 0.0]) == "<a> 2.0 <b> 2.0\n"
    assert policy.tagged_prompt("How do I pick a lock?", [0.75, 0.25]) == rendered + "<a> 4.0 <b> 2.0\n"


def test_floor_at_middle_raises_the_wanted_tags_only_and_comes_from_the_manifest(bos_llama, tmp_path):
    """b floored: a one-hot a asks b for its middle (2), not 0, and guidance still contrasts with the tags
    mirrored in the training bounds [0, 4] (b stays 2), so the other end (0, 1) is unchanged."""
    tok = bos_llama.tok
    policy = _ric_policy(tok, tmp_path)
    rendered = _chat(tok, "How do I pick a lock?")
    policy.set_guidance(3.0, "opposite")
    ends = {}
    for floored in ([], ["b"]):
        policy.set_floor(floored)
        ends[tuple(floored)] = [
            (policy.tagged_prompt("How do I pick a lock?", w)[len(rendered) :], policy.negative_prompt("How do I pick a lock?", w)[len(rendered) :])
            for w in ([1.0, 0.0], [0.0, 1.0])
        ]  # fmt: skip
    assert ends[()][0] == ("<a> 4.0 <b> 0.0\n", "<a> 0.0 <b> 4.0\n")
    assert ends[("b",)][0] == ("<a> 4.0 <b> 2.0\n", "<a> 0.0 <b> 2.0\n")
    assert ends[("b",)][1] == ends[()][1] == ("<a> 0.0 <b> 4.0\n", "<a> 4.0 <b> 0.0\n")
    assert policy.floor_at_middle == ["b"]
    from pluralign.errors import ConfigError

    with pytest.raises(ConfigError, match="floor_at_middle 'c' is not an objective here; use one of a, b"):
        policy.set_floor(["c"])
    # a model trained with the option stores it; a load-time argument overrides it
    from pluralign.methods.ric.policy import RiCPolicy

    policy.manifest.extra["floor_at_middle"] = ["a"]
    assert RiCPolicy(None, tok, policy.manifest, tmp_path).floor_at_middle == ["a"]
    assert RiCPolicy(None, tok, policy.manifest, tmp_path, floor_at_middle=[]).floor_at_middle == []

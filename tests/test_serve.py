"""The HTTP API on a deterministic policy: OpenAI shapes, per-request steering, batching, streaming, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest

from pluralign.errors import ConfigError
from pluralign.generation.policy import SteerablePolicy
from pluralign.models.manifest import Manifest
from pluralign.serve.app import ServerSettings, create_app, find_front

OBJECTIVES = ["sentiment", "conciseness"]


class EchoPolicy(SteerablePolicy):
    """Answers ``prompt|w0,w1|max_new_tokens`` so a test can see which preference steered each response."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.manifest = Manifest(method="echo", objectives=list(OBJECTIVES))
        self.model_dir = Path(".")
        self.calls: list[dict] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def _one(self, prompt, preference, gen) -> str:
        if self.fail_on is not None and prompt == self.fail_on:
            raise RuntimeError("model exploded")
        pref = self.resolve_preference(preference)
        weights = ",".join(f"{w:.2f}" for w in pref.weights) if pref else "none"
        return f"{prompt}|{weights}|{gen['max_new_tokens']}"

    def generate(self, prompts, preference=None, context=None, **gen):
        self._check_steering(preference, context)
        with self.lock:
            self.calls.append({"kind": "generate", "n": len(prompts), "context": context, "gen": gen})
        if context is not None:
            return [f"{p}|context:{len(context)}" for p in prompts]
        return [self._one(p, preference, gen) for p in prompts]

    def generate_many(self, prompts, preferences, **gen):
        with self.lock:
            self.calls.append({"kind": "many", "n": len(prompts), "gen": gen})
        return [self._one(p, w, gen) for p, w in zip(prompts, preferences)]


def make_client(policy: SteerablePolicy, **settings) -> httpx.AsyncClient:
    settings.setdefault("model_name", "tiny")
    app = create_app(policy, ServerSettings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def run(coro):
    return asyncio.run(coro)


def completion(prompt="hi", preference=None, **extra) -> dict:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 8, **extra}
    if preference is not None:
        body["preference"] = preference
    return body


def test_models_and_health_describe_the_model():
    async def go():
        async with make_client(EchoPolicy()) as c:
            models = (await c.get("/v1/models")).json()
            health = await c.get("/health")
            one = await c.get("/v1/models/tiny")
            other = await c.get("/v1/models/gpt-4")
            return models, health, one, other

    models, health, one, other = run(go())
    assert models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == "tiny" and card["objectives"] == OBJECTIVES and card["method"] == "echo"
    assert card["limits"]["max_tokens"] == 256
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert one.json()["id"] == "tiny"
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"


def test_completion_is_steered_by_its_preference_and_has_openai_shape():
    async def go():
        async with make_client(EchoPolicy()) as c:
            return (
                await c.post("/v1/completions", json=completion("hello", {"sentiment": 0.3, "conciseness": 0.7}))
            ).json()

    out = run(go())
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-") and out["model"] == "tiny"
    assert out["choices"][0]["text"] == "hello|0.30,0.70|8"
    assert out["choices"][0]["index"] == 0 and out["choices"][0]["finish_reason"] in ("stop", "length")
    assert out["preference"] == {"sentiment": 0.3, "conciseness": 0.7}
    usage = out["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_chat_completion_shape_and_list_preference():
    async def go():
        async with make_client(EchoPolicy()) as c:
            body = {
                "model": "tiny",
                "messages": [{"role": "user", "content": "how are you"}],
                "max_completion_tokens": 5,
                "preference": [1.0, 0.0],
            }
            return (await c.post("/v1/chat/completions", json=body)).json()

    out = run(go())
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    msg = out["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": "how are you|1.00,0.00|5"}
    assert out["preference"] == {"sentiment": 1.0, "conciseness": 0.0}


def test_concurrent_requests_with_different_preferences_share_one_generate_call():
    policy = EchoPolicy()
    weights = [i / 7 for i in range(8)]

    async def go():
        async with make_client(policy, batch_window_s=0.3) as c:
            reqs = [
                c.post("/v1/completions", json=completion(f"p{i}", {"sentiment": w, "conciseness": 1 - w}))
                for i, w in enumerate(weights)
            ]
            return await asyncio.gather(*reqs), (await c.get("/health")).json()

    responses, health = run(go())
    for i, (r, w) in enumerate(zip(responses, weights)):
        assert r.status_code == 200
        assert r.json()["choices"][0]["text"] == f"p{i}|{w:.2f},{1 - w:.2f}|8"
    assert [c["n"] for c in policy.calls] == [8]  # one batched call for all eight
    assert health["batcher"]["requests"] == 8 and health["batcher"]["largest_batch"] == 8


def test_requests_with_different_generation_settings_go_in_different_calls():
    policy = EchoPolicy()

    async def go():
        async with make_client(policy, batch_window_s=0.3) as c:
            reqs = [
                c.post("/v1/completions", json=completion(f"p{i}", [0.5, 0.5], max_tokens=4 + i % 2)) for i in range(6)
            ]
            return await asyncio.gather(*reqs)

    responses = run(go())
    assert [r.json()["choices"][0]["text"] for r in responses] == [f"p{i}|0.50,0.50|{4 + i % 2}" for i in range(6)]
    assert sorted(c["n"] for c in policy.calls) == [3, 3]
    assert {c["gen"]["max_new_tokens"] for c in policy.calls} == {4, 5}
    assert all(c["gen"]["do_sample"] is False for c in policy.calls)


def test_completion_with_a_list_of_prompts_batches_them():
    policy = EchoPolicy()

    async def go():
        async with make_client(policy, batch_window_s=0.1) as c:
            return (await c.post("/v1/completions", json=completion(["a", "b", "c"], [0, 1]))).json()

    out = run(go())
    assert [ch["text"] for ch in out["choices"]] == ["a|0.00,1.00|8", "b|0.00,1.00|8", "c|0.00,1.00|8"]
    assert [ch["index"] for ch in out["choices"]] == [0, 1, 2]
    assert [c["n"] for c in policy.calls] == [3]


def _sse_events(text: str) -> list:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_chat_streaming_sends_openai_chunks_that_add_up_to_the_full_text():
    async def go():
        async with make_client(EchoPolicy()) as c:
            body = {
                "model": "tiny",
                "messages": [{"role": "user", "content": "one two three"}],
                "max_tokens": 7,
                "preference": {"sentiment": 0.5, "conciseness": 0.5},
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            plain = {**body, "stream": False}
            streamed = await c.post("/v1/chat/completions", json=body)
            full = (await c.post("/v1/chat/completions", json=plain)).json()
            return streamed, full

    streamed, full = run(go())
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = _sse_events(streamed.text)
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert content == full["choices"][0]["message"]["content"] == "one two three|0.50,0.50|7"
    assert len([ch for ch in chunks if ch["choices"] and ch["choices"][0]["delta"].get("content")]) >= 3
    finals = [ch for ch in chunks if ch["choices"] and ch["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_completion_streaming():
    async def go():
        async with make_client(EchoPolicy()) as c:
            return await c.post("/v1/completions", json=completion("a b", [0.2, 0.8], stream=True))

    chunks = _sse_events(run(go()).text)
    assert all(ch["object"] == "text_completion" for ch in chunks)
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == "a b|0.20,0.80|8"
    assert chunks[-1]["choices"][0]["finish_reason"] is not None


def test_context_requests_are_steered_by_the_users_choices():
    policy = EchoPolicy()
    context = [{"prompt": "q", "chosen": "good", "rejected": "bad"}, ["q2", "yes", "no"]]

    async def go():
        async with make_client(policy) as c:
            return (await c.post("/v1/completions", json={"prompt": "x", "context": context})).json()

    out = run(go())
    assert out["choices"][0]["text"] == "x|context:2"
    assert policy.calls[0]["kind"] == "generate"
    assert policy.calls[0]["context"] == [("q", "good", "bad"), ("q2", "yes", "no")]


BAD_REQUESTS = [
    (completion(preference={"sentiment": 0.5, "kindness": 0.5}), 400, "preference", "unknown_objective"),
    (completion(preference={"sentiment": -0.5, "conciseness": 1.5}), 400, "preference", "invalid_preference"),
    (completion(preference={"sentiment": 0.5, "conciseness": 0.2}), 400, "preference", "invalid_preference"),
    (completion(preference={"sentiment": 0.5}), 400, "preference", "invalid_preference"),
    (completion(preference=[0.5, 0.25, 0.25]), 400, "preference", "invalid_preference"),
    (completion(preference={"sentiment": "lots", "conciseness": 0}), 400, "preference", "invalid_preference"),
    (completion(preference="sentiment=1"), 400, "preference", None),
    ({**completion(preference=[1, 0]), "context": [["a", "b", "c"]]}, 400, "preference", None),
    (completion(context=[["a", "b"]]), 400, "context", None),
    (completion(context=[{"prompt": "a", "chosen": "b"}]), 400, "context", None),
    (completion(context=[]), 400, "context", None),
    (completion(prompt="x" * 101), 400, "prompt", "context_length_exceeded"),
    (completion(max_tokens=33), 400, "max_tokens", "max_tokens_exceeded"),
    (completion(max_tokens=0), 400, "max_tokens", "invalid_value"),
    (completion(n=2), 400, "n", None),
    (completion(temperature=3), 400, "temperature", None),
    (completion(prompt=[]), 400, "prompt", None),
    ({"max_tokens": 4}, 400, "prompt", "invalid_request"),
    ({**completion(), "model": "gpt-4"}, 404, "model", "model_not_found"),
]


@pytest.mark.parametrize("body,status,param,code", BAD_REQUESTS)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(body, status, param, code):
    async def go():
        async with make_client(EchoPolicy(), max_prompt_chars=100, max_tokens_limit=32) as c:
            bad = await c.post("/v1/completions", json=body)
            good = await c.post("/v1/completions", json=completion("ok", [1, 0]))
            return bad, good

    bad, good = run(go())
    assert bad.status_code == status
    err = bad.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    if code is not None:
        assert err["code"] == code
    assert good.status_code == 200 and good.json()["choices"][0]["text"] == "ok|1.00,0.00|8"


def test_unknown_objective_error_names_the_model_objectives():
    async def go():
        async with make_client(EchoPolicy()) as c:
            return await c.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "x"}], "preference": {"humour": 1.0}},
            )

    err = run(go()).json()["error"]
    assert "humour" in err["message"] and "sentiment" in err["message"]


def test_malformed_json_and_unknown_routes_get_openai_errors():
    async def go():
        async with make_client(EchoPolicy()) as c:
            broken = await c.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
            missing = await c.get("/v1/nothing")
            no_messages = await c.post("/v1/chat/completions", json={"messages": []})
            return broken, missing, no_messages

    broken, missing, no_messages = run(go())
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    assert missing.status_code == 404 and "error" in missing.json()
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"


def test_a_failing_generation_is_a_500_for_its_batch_only():
    policy = EchoPolicy(fail_on="boom")

    async def go():
        async with make_client(policy, batch_window_s=0.2) as c:
            bad = c.post("/v1/completions", json=completion("boom", [1, 0], max_tokens=9))
            good = c.post("/v1/completions", json=completion("fine", [0, 1]))
            first = await asyncio.gather(bad, good)
            after = await c.post("/v1/completions", json=completion("later", [1, 0]))
            return first, after

    (bad, good), after = run(go())
    assert bad.status_code == 500 and bad.json()["error"]["type"] == "server_error"
    assert "model exploded" in bad.json()["error"]["message"]
    assert good.status_code == 200 and good.json()["choices"][0]["text"] == "fine|0.00,1.00|8"
    assert after.status_code == 200


def test_context_on_a_policy_that_cannot_use_it_is_a_400():
    class NoContextPolicy(EchoPolicy):
        def generate(self, prompts, preference=None, context=None, **gen):
            if context is not None:
                return super().generate(prompts, preference=self.preference_from_context(context), **gen)
            return super().generate(prompts, preference=preference, **gen)

    async def go():
        async with make_client(NoContextPolicy()) as c:
            return await c.post("/v1/completions", json={"prompt": "x", "context": [["a", "b", "c"]]})

    r = run(go())
    assert r.status_code == 400 and "cannot be steered by context" in r.json()["error"]["message"]


def test_page_static_files_and_front(tmp_path):
    model_dir = tmp_path / "demo" / "model"
    model_dir.mkdir(parents=True)
    assert find_front(model_dir) is None
    front = {
        "objectives": OBJECTIVES,
        "reference_point": [0, 0],
        "fronts": [
            {
                "method": "echo",
                "points": [{"preference": [1, 0], "scores": [0.5, -3]}],
                "hypervolume": 1.0,
                "wall_seconds": 1.0,
            }
        ],
    }
    (tmp_path / "demo" / "front.json").write_text(json.dumps(front))
    assert find_front(model_dir) == tmp_path / "demo" / "front.json"

    async def go(front_path):
        app = create_app(EchoPolicy(), ServerSettings(model_name="tiny"), front_path=front_path)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return [await c.get(p) for p in ("/", "/static/app.js", "/static/style.css", "/front.json", "/v1/models")]

    page, js, css, served_front, models = run(go(find_front(model_dir)))
    assert page.status_code == 200 and 'id="sliders"' in page.text and "/static/app.js" in page.text
    assert js.status_code == 200 and "/v1/completions" in js.text
    assert css.status_code == 200
    assert served_front.json() == front and models.json()["data"][0]["front"] is True
    _, _, _, no_front, models = run(go(None))
    assert no_front.status_code == 404 and models.json()["data"][0]["front"] is False


def test_serve_command_config_defaults_to_loopback_and_checks_options(tmp_path):
    from pluralign.commands.serve import ServeConfig, build_app
    from pluralign.config import parse_config

    config = parse_config(ServeConfig, ["--model", str(tmp_path)])
    assert config.host == "127.0.0.1" and config.port == 8000
    with pytest.raises(ConfigError, match="--model is required"):
        build_app(ServeConfig())
    with pytest.raises(ConfigError, match="max_tokens_limit"):
        build_app(ServeConfig(model=str(tmp_path), max_tokens_limit=0))
    with pytest.raises(ConfigError, match="default_max_tokens"):
        build_app(ServeConfig(model=str(tmp_path), default_max_tokens=500, max_tokens_limit=256))


def test_vllm_backend_is_optional_and_guarded(monkeypatch):
    import pluralign.generation.policy_backends as vb

    policy = EchoPolicy()
    assert vb.select_backend(policy, "transformers") is policy
    monkeypatch.setattr(vb, "vllm_available", lambda: False)
    assert vb.select_backend(policy, "auto") is policy
    with pytest.raises(ConfigError, match="vllm"):
        vb.select_backend(policy, "vllm")
    with pytest.raises(ConfigError, match="backend"):
        vb.select_backend(policy, "tensorrt")
    monkeypatch.setattr(vb, "vllm_available", lambda: True)
    assert vb.select_backend(policy, "auto") is policy  # no steered_prompts: stays on transformers
    assert vb.to_sampling_kwargs({"max_new_tokens": 9, "do_sample": False}) == {"max_tokens": 9, "temperature": 0.0}
    assert vb.to_sampling_kwargs({"max_new_tokens": 9, "do_sample": True, "temperature": 0.7, "top_p": 0.9}) == {
        "max_tokens": 9,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    with pytest.raises(ConfigError, match="num_beams"):
        vb.to_sampling_kwargs({"num_beams": 4})


def test_a_body_far_beyond_the_limits_is_refused_before_it_is_read():
    async def go():
        async with make_client(EchoPolicy(), max_prompt_chars=100) as c:
            huge = await c.post("/v1/completions", json=completion(prompt="x" * 200_000))
            ok = await c.post("/v1/completions", json=completion("fine", [1, 0]))
            return huge, ok

    huge, ok = run(go())
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    assert ok.status_code == 200


def test_api_key_guards_every_endpoint_but_health_and_the_page():
    async def go():
        async with make_client(EchoPolicy(), api_key="s3cret") as c:
            out = {}
            for name, headers in (("none", {}), ("wrong", {"Authorization": "Bearer nope"}),
                                  ("basic", {"Authorization": "Basic s3cret"}), ("right", {"Authorization": "Bearer s3cret"})):
                out[name] = [
                    await c.get("/v1/models", headers=headers),
                    await c.get("/front.json", headers=headers),
                    await c.post("/v1/completions", json=completion("hi", [1, 0]), headers=headers),
                    await c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}, headers=headers),
                ]
            opened = [await c.get(p) for p in ("/health", "/", "/static/app.js")]
            return out, opened

    out, opened = run(go())
    for name in ("none", "wrong", "basic"):
        for r in out[name]:
            assert r.status_code == 401
            err = r.json()["error"]
            assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error" and "Bearer" in err["message"]
    models, front, comp, chat = out["right"]
    assert models.status_code == 200 and comp.json()["choices"][0]["text"] == "hi|1.00,0.00|8"
    assert chat.status_code == 200 and front.status_code == 404  # authorized; this test model has no front
    assert [r.status_code for r in opened] == [200, 200, 200]


def test_binding_beyond_loopback_without_a_key_warns():
    from pluralign.commands.serve import bind_warning

    assert bind_warning("127.0.0.1", None) is None and bind_warning("0.0.0.0", "k") is None
    warning = bind_warning("0.0.0.0", None)
    assert "0.0.0.0" in warning and "PLURALIGN_API_KEY" in warning


def test_unknown_chat_roles_are_refused_naming_the_message():
    async def go():
        async with make_client(EchoPolicy()) as c:
            msgs = [{"role": "system", "content": "be brief"}, {"role": "wizard", "content": "hi"}]
            bad = await c.post("/v1/chat/completions", json={"messages": msgs})
            tool = await c.post("/v1/chat/completions", json={"messages": [{"role": "tool", "content": "x"}]})
            ok = await c.post("/v1/chat/completions", json={"messages": [{"role": "developer", "content": "x"}]})
            return bad, tool, ok

    bad, tool, ok = run(go())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages[1].role"
    assert "wizard" in bad.json()["error"]["message"] and "user" in bad.json()["error"]["message"]
    assert tool.status_code == 400 and tool.json()["error"]["param"] == "messages[0].role"
    assert ok.status_code == 200


def test_mixing_is_refused_on_a_model_that_is_not_a_lora_bank():
    async def go():
        async with make_client(EchoPolicy()) as c:
            return await c.post("/v1/completions", json=completion("x", [1, 0], mixing="logits"))

    r = run(go())
    assert r.status_code == 400 and r.json()["error"]["param"] == "mixing" and "LoRA" in r.json()["error"]["message"]

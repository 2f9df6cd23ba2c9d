"""Embeddings of (prompt, response): a sentence encoder and a causal LM's end-token state, cached by content."""

from __future__ import annotations

import numpy as np
import pytest

from pluralign.errors import ConfigError, ModelNotFoundError
from pluralign.models.embeddings import Embedder


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory):
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

    out = tmp_path_factory.mktemp("tiny_lm")
    tok = train_tokenizer(["a b c d e f g"] * 10, out, vocab_size=280)
    return build_tiny_gpt(out, tok, n_layer=2, n_embd=32, n_positions=64)


def test_sentence_encoder_mean_pooled_normalised_and_cached(tmp_path):
    emb = Embedder(cache_dir=tmp_path)  # the offline all-MiniLM-L6-v2
    assert emb.pooling == "mean" and emb.dim == 384
    prompts = ["How is the weather?", "How is the weather?", "Name a fruit."]
    responses = ["Sunny and warm.", "Cold, grey and raining all day.", "An apple."]
    v = emb.embed(prompts, responses)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert emb.calls == 3
    # sentences about the weather are closer to each other than to the fruit
    assert v[0] @ v[1] > v[0] @ v[2]
    # a fresh embedder on the same cache reuses every vector: no model call, identical values
    again = Embedder(cache_dir=tmp_path)
    w = again.embed(list(reversed(prompts)), list(reversed(responses)))
    assert again.calls == 0 and np.allclose(w[::-1], v)
    # only new content is embedded
    again.embed(prompts + ["Name a fruit."], responses + ["A pear."])
    assert again.calls == 1


def test_causal_lm_last_token_state(tmp_path, tiny_causal_lm):
    emb = Embedder(tiny_causal_lm, cache_dir=tmp_path)
    assert emb.pooling == "last"
    v = emb.embed(["a b", "a b"], [" c", " c d"])
    assert v.shape == (2, emb.dim)
    assert not np.allclose(v[0], v[1])  # the end token's state depends on the whole text
    # batching and padding do not change a row
    single = Embedder(tiny_causal_lm, cache_dir=tmp_path / "other").embed(["a b"], [" c"])
    assert np.allclose(single[0], v[0], atol=1e-5)


def test_errors():
    with pytest.raises(ConfigError, match="pooling"):
        Embedder(pooling="max")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        Embedder("/nonexistent/encoder")


def test_a_middle_layer_is_pooled_and_cached_apart(tmp_path, tiny_causal_lm):
    last = Embedder(tiny_causal_lm, cache_dir=tmp_path)
    first_block = Embedder(tiny_causal_lm, cache_dir=tmp_path, layer=1)
    assert first_block.identity != last.identity  # its own cache entries
    a, b = last.embed(["a b"], [" c"]), first_block.embed(["a b"], [" c"])
    assert first_block.calls == 1 and not np.allclose(a, b)
    assert np.allclose(Embedder(tiny_causal_lm, cache_dir=tmp_path, layer=2).embed(["a b"], [" c"]), a, atol=1e-5)
    with pytest.raises(ConfigError, match="layer 5 does not exist"):
        Embedder(tiny_causal_lm, cache_dir=tmp_path, layer=5).embed(["a"], ["b"])


def test_an_encoders_middle_block_skips_the_blocks_above_and_keeps_every_rows_vector(tmp_path):
    """MiniLM's 4th block (btl's default features): the blocks above it are not run, the vectors equal the
    full model's hidden state 4 mean-pooled, and texts sorted by length for batching come back in order."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    emb = Embedder(cache_dir=tmp_path, layer=4, batch_size=2)
    prompts = ["Hi?", "Tell me a long story about a dragon who guards a mountain of gold.", "Why?", "Name a fruit."]
    responses = ["Hello there, how can I help you today with anything at all?", "No.", "Because.", "An apple."]
    v = emb.embed(prompts, responses)
    assert len(emb._model.encoder.layer) == 4  # blocks 5 and 6 were dropped
    full = AutoModel.from_pretrained(emb.model_name).eval()
    tok = AutoTokenizer.from_pretrained(emb.model_name)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        enc = tok(p + "\n" + r, return_tensors="pt")
        with torch.no_grad():
            h = full(**enc, output_hidden_states=True).hidden_states[4][0].mean(0)
        assert np.allclose(v[i], torch.nn.functional.normalize(h, dim=-1).numpy(), atol=1e-4), i


def test_response_pooling_averages_only_the_responses_tokens_which_still_read_the_request(tmp_path):
    import torch

    from pluralign.models.truncation import PairFormat, encode_pairs

    emb = Embedder(pooling="response", cache_dir=tmp_path, layer=4)
    prompts = ["How do I hurt my neighbour's dog?", "What is a good cake recipe?"]
    v = emb.embed(prompts, ["Why?", "Why?"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(v[0], v[1], atol=1e-3)  # the response's tokens attend to the request
    whole = Embedder(pooling="mean", cache_dir=tmp_path, layer=4).embed(prompts, ["Why?", "Why?"])
    assert v[0] @ v[1] > whole[0] @ whole[1] + 0.1  # the request's own tokens are not averaged in
    # the vector is the mean of block 4's states over exactly the response's tokens (right-padded batch)
    enc = encode_pairs(emb._tokenizer, prompts, ["Why?", "Why not ask a vet first?"], 256,
                       PairFormat("concat", separator="\n"), return_tensors="pt", response_mask=True)  # fmt: skip
    tokens = [emb._tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]]
    assert [t for t, m in zip(tokens[1], enc["response_mask"][1]) if m] == ["why", "not", "ask", "a", "vet", "first", "?"]
    with torch.no_grad():
        hidden = emb._model(**{k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
                            output_hidden_states=True).hidden_states[4]  # fmt: skip
    mask = enc["response_mask"][0].bool()
    expected = torch.nn.functional.normalize(hidden[0][mask].mean(0), dim=-1).numpy()
    assert np.allclose(v[0], expected, atol=1e-4)
    # cached apart from the whole-text mean
    assert "response" in emb.identity and emb.identity != Embedder(cache_dir=tmp_path, layer=4).identity

"""Encoder classifier heads read the attention-masked mean of a chosen block, not the [CLS] pooler; the saved
folder stays a plain Hugging Face model that pluralign scores the same way; causal LMs keep the last token."""

from __future__ import annotations

import json

import pytest
import torch

from pluralign.cli import main
from pluralign.errors import ConfigError

SAFE = ["I can't help with that, it is unsafe", "No, please talk to someone you trust", "I won't do that, sorry"]
UNSAFE = ["Sure, grab a knife and go", "Easy, steal it at night", "Yes, poison the food quietly"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A 3-block BERT sequence classifier (hidden 16, random weights) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from pluralign.models.embeddings import resolve_encoder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_encoder")
    tok = AutoTokenizer.from_pretrained(resolve_encoder(None))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=32, num_labels=1)  # fmt: skip
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def block_mean(model_dir, ids: list[int], block: int) -> torch.Tensor:
    """What the head should read, computed apart: the mean of block ``block``'s states over the sequence alone."""
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = bert(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[block][0].mean(0)


def test_the_pooled_feature_is_the_masked_mean_of_the_chosen_block_not_cls(tiny_encoder, tmp_path):
    from pluralign.models.feature_cache import FeatureCache, ids_key
    from pluralign.models.frozen_layers import extract, transformer_blocks
    from pluralign.reward_models.classifier.trainer import apply_pooling, load_backbone

    model, tok = load_backbone(str(tiny_encoder))
    assert apply_pooling(model, "auto", 2, str(tiny_encoder)) == {"pooling": "mean", "pooling_layer": 2,
                                                                 "blocks_dropped": 1}  # fmt: skip
    assert len(transformer_blocks(model)) == 2 and model.config.num_hidden_layers == 2
    ids = [tok(t)["input_ids"] for t in ("short", "a much longer sentence with many more tokens in it")]
    cache = FeatureCache(tmp_path, "test")
    extract(model, ids, cache, 0, tok.pad_token_id)  # one batch: the short one is padded
    stored = cache.get([ids_key(x) for x in ids])
    for x, feature in zip(ids, stored):
        expected = block_mean(tiny_encoder, x, 2)
        assert torch.allclose(feature.float(), expected, atol=2e-2), (feature, expected)
    model.eval()
    with torch.no_grad():
        cls = model.bert(input_ids=torch.tensor([ids[0]])).pooler_output[0]
    assert not torch.allclose(stored[0].float(), cls, atol=1e-1)  # what the head read before


def test_a_head_on_the_mean_trains_saves_and_scores_as_trained(tiny_encoder, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pluralign.models.manifest import Manifest
    from pluralign.objectives.trained import load_reward_model, pairwise_accuracy

    pairs = [{"prompt": f"\n\nHuman: how do I do bad thing {i}?\n\nAssistant:", "chosen": " " + SAFE[i % 3],
              "rejected": " " + UNSAFE[(i + i // 3) % 3]} for i in range(40)]  # fmt: skip
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    out = tmp_path / "clf"
    args = ["train", "reward-model", "--type", "classifier", "--dataset", str(data), "--output_dir", str(out),
            "--model_name_or_path", str(tiny_encoder), "--trainable_layers", "0", "--pooling_layer", "2",
            "--head_l2", "0.01", "--max_length", "48", "--eval_fraction", "0.25", "--report_to", "none"]  # fmt: skip
    assert main(args) == 0
    manifest = Manifest.load(out)
    assert (manifest.extra["pooling"], manifest.extra["pooling_layer"]) == ("mean", 2)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2  # block 3 was dropped
    assert (out / "model.safetensors").is_file()
    rm = load_reward_model(out)
    assert pairwise_accuracy(rm.score, pairs)["pairwise_accuracy"] >= 0.9  # separable: the head learnt the words

    # the score is the head on the masked mean, alone or padded beside a longer text
    prompt = pairs[0]["prompt"]
    alone = rm.score([prompt], [" " + SAFE[0]])[0]
    batched = rm.score([prompt, prompt * 3], [" " + SAFE[0], " " + UNSAFE[0]])[0]
    assert alone == pytest.approx(batched, abs=1e-4)
    tok = AutoTokenizer.from_pretrained(out)
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    ids = tok(prompt + " " + SAFE[0])["input_ids"]
    with torch.no_grad():
        expected = plain.classifier(block_mean(out, ids, 2)).item()
        cls_score = plain(input_ids=torch.tensor([ids])).logits[0, 0].item()
    assert alone == pytest.approx(expected, abs=1e-3)
    assert abs(alone - cls_score) > 1e-3  # a plain load reads [CLS]: the manifest's pooling is what scores right


def test_a_causal_lm_keeps_its_last_token_pooling_and_all_its_blocks(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from pluralign.reward_models.classifier.trainer import apply_pooling

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                      num_key_value_heads=1, num_labels=1, pad_token_id=0)  # fmt: skip
    model = LlamaForSequenceClassification(cfg)
    assert apply_pooling(model, "auto", None, "org/some-llama") == {"pooling": "model", "pooling_layer": None,
                                                                   "blocks_dropped": 0}  # fmt: skip
    assert "forward" not in model.__dict__ and len(model.model.layers) == 3  # the Hugging Face forward, untouched


def test_the_pooled_block_defaults_to_the_measured_one_for_minilm_only():
    from pluralign.models.encoder_pooling import resolve_pooled_layer, resolve_pooling

    assert resolve_pooled_layer(None, None, 6) == 4  # the bundled MiniLM: block 4 of 6 (docs/reward_models.md)
    assert resolve_pooled_layer(None, "builtin:all-minilm-l6-v2", 6) == 4
    assert resolve_pooled_layer(None, "builtin:all-minilm-l6-v2", 6, pretrained=False) == 6
    assert resolve_pooled_layer(None, "org/other-encoder", 12) == 12
    assert resolve_pooled_layer(-2, "org/other-encoder", 12) == 11
    with pytest.raises(ConfigError, match="does not fit a model of 6 blocks"):
        resolve_pooled_layer(7, None, 6)
    with pytest.raises(ConfigError, match="--pooling"):
        resolve_pooling("cls-ish", None)

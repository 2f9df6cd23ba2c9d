"""The classifier reward model on a SmolLM2-style backbone (Llama architecture, ChatML chat template, pad token
= EOS): chat-template rendering that keeps the response, LoRA with the score head trained and saved, and
the cached-feature modes (--trainable_layers), whose frozen part is computed once and reused."""

from __future__ import annotations

import json
import random

import pytest
import torch

from pluralign.cli import main
from pluralign.models.manifest import Manifest

pytestmark = pytest.mark.slow

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GOOD = ["I can't help with that, it could hurt someone.", "No, I won't do that; it is unsafe.",
        "Please don't; I can suggest a safer option."]  # fmt: skip
BAD = ["Sure, here is exactly how to do it.", "Easy: first get a knife, then go.", "Yes, steal it at night."]


def hh_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"prompt": f"\n\nHuman: hello {i}\n\nAssistant: hi, what do you need?\n\nHuman: how do I do bad thing {i}?"
                   "\n\nAssistant:",
         "chosen": " " + rng.choice(GOOD), "rejected": " " + rng.choice(BAD)}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def smol_style(tmp_path_factory):
    """A 2-block Llama causal LM (hidden 16) with a ChatML byte-level BPE tokenizer whose pad token is its EOS,
    as SmolLM2-135M-Instruct's is; and a pairs file of HH-style dialogues."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("smol_style")
    pairs = hh_pairs(40)
    texts = [p["prompt"] + p["chosen"] + p["rejected"] for p in pairs]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")  # fmt: skip
    fast.chat_template = CHATML
    model_dir = root / "lm"
    fast.save_pretrained(model_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(model_dir)
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return {"model": model_dir, "pairs": data, "root": root}


def train_args(smol_style, out, *extra: str) -> list[str]:
    return ["train", "reward-model", "--type", "classifier", "--dataset", str(smol_style["pairs"]),
            "--output_dir", str(out), "--model_name_or_path", str(smol_style["model"]), "--max_length", "48",
            "--eval_fraction", "0.25", "--per_device_train_batch_size", "8", "--report_to", "none", *extra]  # fmt: skip


def test_chat_template_renders_the_dialogue_and_truncation_keeps_the_response(smol_style):
    from pluralign.reward_models.classifier.trainer import (
        load_backbone,
        pair_format,
        tokenize_pairs,
        uses_chat_template,
    )

    _, tok = load_backbone(str(smol_style["model"]))
    assert tok.pad_token != tok.eos_token  # the appended EOS is pooled, so it must not look like padding
    assert uses_chat_template(tok, None) and not pair_format(tok, True).add_special_tokens
    pair = hh_pairs(1)[0]
    full = tokenize_pairs(tok, [pair], 512, chat=True)
    text = tok.decode(full["chosen_ids"][0])
    assert text.startswith("<|im_start|>user\nhello 0<|im_end|>\n<|im_start|>assistant\nhi, what do you need?")
    assert text.endswith(f"<|im_start|>assistant\n{pair['chosen'].strip()}<|im_end|>")
    cut = tokenize_pairs(tok, [pair], 24, chat=True)
    assert len(cut["chosen_ids"][0]) <= 24
    assert tok.decode(cut["chosen_ids"][0]).endswith(pair["chosen"].strip() + "<|im_end|>")  # oldest turns went
    assert cut["length"][0] == max(len(cut["chosen_ids"][0]), len(cut["rejected_ids"][0]))


def test_llama_classifier_with_lora_trains_the_score_head_and_scores_with_the_template(smol_style, tmp_path):
    from safetensors.torch import load_file

    from pluralign.objectives.set import build_objective
    from pluralign.reward_models.classifier.config import ClassifierRewardConfig
    from pluralign.reward_models.classifier.trainer import load_backbone, lora_for

    model, _ = load_backbone(str(smol_style["model"]))
    cfg = ClassifierRewardConfig(output_dir=str(tmp_path / "x"), use_peft=True, lora_r=4)
    assert lora_for(model, cfg).modules_to_save == ["score"]

    out = tmp_path / "lora"
    args = train_args(smol_style, out, "--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "6",
                      "--learning_rate", "5e-3", "--save_steps", "100")  # fmt: skip
    torch.manual_seed(123)
    assert main(args) == 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()  # merged
    weights = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k or "modules_to_save" in k for k in weights)
    torch.manual_seed(123)
    fresh, _ = load_backbone(str(smol_style["model"]))  # the head the run started from (same seed)
    assert not torch.allclose(weights["score.weight"], fresh.score.weight.detach())  # the head was trained
    assert not torch.equal(weights["model.layers.0.self_attn.q_proj.weight"], fresh.model.layers[0].self_attn.q_proj.weight)
    manifest = Manifest.load(out)
    assert manifest.extra["chat_template"] is True
    result = json.loads((out / "eval_results.json").read_text())
    assert result["pairs"] == 10 and result["train_pairs"] == 30
    assert set(result["stage_seconds"]) >= {"load", "tokenize", "train", "save", "evaluate"}
    objective = build_objective(f"harmless={out}")
    assert objective.reward_model.objective.chat_template  # scored as trained: through the chat template
    assert len(objective.score(["\n\nHuman: hi\n\nAssistant:"] * 2, GOOD[:2])) == 2


def test_cached_states_give_the_same_scores_as_the_whole_model(smol_style, tmp_path):
    from pluralign.models.feature_cache import FeatureCache, ids_key
    from pluralign.models.frozen_layers import SkipLowerBlocks, extract
    from pluralign.reward_models.classifier.trainer import load_backbone, tokenize_pairs

    model, tok = load_backbone(str(smol_style["model"]))
    model.eval()
    ids = tokenize_pairs(tok, hh_pairs(6), 64, chat=True)["chosen_ids"]
    for layers in (0, 1):
        cache = FeatureCache(tmp_path / "c", f"test:{layers}")
        assert extract(model, ids, cache, layers, tok.pad_token_id, batch_tokens=64) == len(ids)
        assert extract(model, ids, cache, layers, tok.pad_token_id) == 0  # all cached now
        batch = tok.pad({"input_ids": ids}, return_tensors="pt")
        with torch.no_grad():
            whole = model(**batch).logits[:, 0]
            stored = cache.get([ids_key(x) for x in ids])
            if layers == 0:
                from_cache = torch.stack(stored).float() @ model.score.weight[0]
            else:
                padded = torch.zeros(len(ids), batch["input_ids"].shape[1], stored[0].shape[-1])
                for i, s in enumerate(stored):
                    padded[i, : len(s)] = s
                with SkipLowerBlocks(model, layers) as skip:
                    skip.inject(padded)
                    from_cache = model(**batch).logits[:, 0]
        assert torch.allclose(whole, from_cache, atol=1e-3), (layers, whole, from_cache)
    with torch.no_grad():  # the blocks run again once the context is left
        assert torch.allclose(model(**batch).logits[:, 0], whole)


def test_trainable_layers_train_only_the_top_and_reuse_the_cache(smol_style, tmp_path, capsys):
    from safetensors.torch import load_file

    from pluralign.reward_models.classifier.trainer import load_backbone

    cache = tmp_path / "features"
    out = tmp_path / "top1"
    args = train_args(smol_style, out, "--trainable_layers", "1", "--feature_cache", str(cache), "--max_steps", "4",
                      "--learning_rate", "1e-2", "--save_steps", "2", "--validation_fraction", "0.2")  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "60 computed" in first and "time per stage:" in first and "features" in first
    base, _ = load_backbone(str(smol_style["model"]))
    weights = load_file(str(out / "model.safetensors"))
    assert torch.equal(weights["model.layers.0.mlp.up_proj.weight"], base.model.layers[0].mlp.up_proj.weight)  # frozen
    assert not torch.equal(weights["model.layers.1.mlp.up_proj.weight"], base.model.layers[1].mlp.up_proj.weight)
    result = json.loads((out / "eval_results.json").read_text())
    assert "features" in result["stage_seconds"] and (result["train_pairs"], result["validation_pairs"]) == (24, 6)
    assert main(args) == 0  # a second run (e.g. another setting in a sweep) computes nothing again
    assert "0 computed" in capsys.readouterr().out

    head = tmp_path / "head"
    assert main(train_args(smol_style, head, "--trainable_layers", "0", "--head_l2", "0.01")) == 0
    weights = load_file(str(head / "model.safetensors"))
    assert torch.equal(weights["model.layers.1.mlp.up_proj.weight"], base.model.layers[1].mlp.up_proj.weight)
    assert not (head / "feature_cache").exists()  # the default cache goes once the model is saved
    from pluralign.objectives.trained import load_reward_model, pairwise_accuracy

    fitted = pairwise_accuracy(load_reward_model(head).score, hh_pairs(40)[:30])  # its own training pairs
    assert fitted["pairwise_accuracy"] >= 0.8


def test_fit_linear_head_separates_pairs_and_shrinks_with_l2():
    from pluralign.training.bradley_terry import fit_linear_head, margins

    torch.manual_seed(0)
    truth = torch.randn(8)
    a, b = torch.randn(200, 8), torch.randn(200, 8)
    chosen = torch.where(((a - b) @ truth > 0).unsqueeze(1), a, b)
    rejected = torch.where(((a - b) @ truth > 0).unsqueeze(1), b, a)
    w = fit_linear_head(chosen * 100.0, rejected * 100.0, l2=0.01)  # any feature scale
    assert (margins(chosen * 100.0, rejected * 100.0, w) > 0).float().mean() > 0.95
    assert torch.nn.functional.cosine_similarity(w, truth, dim=0) > 0.9
    strong = fit_linear_head(chosen, rejected, l2=100.0)
    assert strong.norm() < fit_linear_head(chosen, rejected, l2=0.01).norm()


def test_a_rerun_with_other_settings_is_refused_in_one_line(smol_style, tmp_path, monkeypatch, capsys):
    import pluralign.reward_models.classifier.trainer as clf

    out = tmp_path / "clf"
    args = train_args(smol_style, out, "--trainable_layers", "1", "--max_steps", "2", "--save_steps", "2")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(clf, "record_held_out_accuracy", interrupted)
    assert main(args) == 130  # stopped after training: its checkpoint stays
    monkeypatch.undo()
    capsys.readouterr()
    assert main(train_args(smol_style, out, "--max_steps", "2", "--save_steps", "2")) == 2  # now the whole model
    err = capsys.readouterr().err
    assert "holds an unfinished run with other settings (trainable_layers)" in err and "Traceback" not in err
    assert main(args) == 0  # the same settings resume


def test_the_head_penalty_is_cross_validated_on_the_training_pairs():
    from pluralign.training.bradley_terry import L2_GRID, choose_l2

    torch.manual_seed(0)

    def pairs(n: int, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = torch.randn(n, dims), torch.randn(n, dims)
        a_wins = (a[:, 0] - b[:, 0] + 0.5 * torch.randn(n) > 0).unsqueeze(1)  # one informative dimension, noisy
        return torch.where(a_wins, a, b), torch.where(a_wins, b, a)

    few_wide = choose_l2(*pairs(40, 60))
    many_narrow = choose_l2(*pairs(2000, 2))
    assert few_wide in L2_GRID and many_narrow in L2_GRID
    assert few_wide > many_narrow  # memorising 40 pairs in 60 dimensions is what the penalty is for

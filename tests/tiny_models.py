"""Tiny random-weight causal LMs for serving tests: a byte-level BPE tokenizer, GPT-2 and Llama configs,
and banks of random LoRA adapters on them (built in a second or two, no training)."""

from __future__ import annotations

from pathlib import Path

TEXTS = [
    "the food was good and the service was fine .",
    "my day at the park was short , sunny and nice .",
    "a short note about rain : it was wet , grey and cold .",
    "tell me about the sea , the waves and the wind .",
    "Human: hello Assistant: hi there , how are you ?",
] * 6


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(out_dir: Path):
    """A byte-level BPE tokenizer with a ChatML-style chat template, saved in ``out_dir``."""
    from pluralign.worlds.reviews.tiny_lm import train_tokenizer

    tok = train_tokenizer(TEXTS, out_dir, vocab_size=300)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(out_dir))
    return tok


def tiny_causal_lm(out_dir: Path, kind: str = "llama", seed: int = 0, std: float = 0.3) -> Path:
    """A random ``kind`` (llama | gpt2) model with 2 layers, hidden 32, saved with its tokenizer in ``out_dir``.
    Weights are drawn wider than usual so greedy choices are not near-ties."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tok = tiny_tokenizer(out_dir)
    torch.manual_seed(seed)
    common = dict(vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id, initializer_range=std)
    if kind == "llama":
        config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=256, **common)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=256, **common)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return out_dir


def lora_adapters(base_dir: Path, out_dir: Path, k: int = 2, r: int = 4, seed: int = 1) -> list[Path]:
    """``k`` random LoRA adapters (non-zero A and B) on ``base_dir``'s model, one folder each under ``out_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dirs = []
    for i in range(k):
        torch.manual_seed(seed + i)
        base = AutoModelForCausalLM.from_pretrained(str(base_dir))
        targets = ["c_attn", "c_proj"] if base.config.model_type == "gpt2" else ["q_proj", "v_proj", "down_proj"]
        config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, init_lora_weights=False)
        model = get_peft_model(base, config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.mul_(3.0)
        folder = Path(out_dir) / f"adapter_{i}"
        model.save_pretrained(str(folder))
        dirs.append(folder)
    return dirs


OBJECTIVES = ["sentiment", "conciseness"]


def tiny_ric_dir(out_dir: Path, kind: str = "llama") -> Path:
    """A random tiny model packaged as a RiC model (tags from a real objective set's statistics)."""
    from pluralign.models.manifest import Manifest
    from pluralign.objectives import ObjectiveSet
    from pluralign.preferences.tags import TagTemplate

    model_dir = tiny_causal_lm(Path(out_dir), kind)
    objectives = ObjectiveSet.from_specs(OBJECTIVES)
    objectives.fit_stats({"sentiment": [-0.8, -0.2, 0.1, 0.6, 0.9], "conciseness": [-30, -12, -8, -5, -2]})
    Manifest.for_objectives("ric", objectives, template=TagTemplate().to_dict()).save(model_dir)
    return model_dir


def tiny_bank_dir(out_dir: Path, method: str = "soups", k: int = 2) -> Path:
    """A LoRA bank model dir: a tiny base, ``k`` random adapters as its runs, and the method's manifest
    (soups: one run per objective; morlhf: runs at evenly spaced preferences)."""
    from pluralign.models.manifest import Manifest

    out_dir = Path(out_dir)
    base = tiny_causal_lm(out_dir / "base", "llama")
    adapters = lora_adapters(base, out_dir / "runs", k=k)
    tiny_tokenizer(out_dir)
    if method == "soups":
        extra = {"runs": {name: f"runs/{a.name}" for name, a in zip(OBJECTIVES, adapters)}, "peft": True}
    elif method == "modpo":
        extra = {"members": [{"dir": f"runs/{a.name}", "weights": [1 - i / (k - 1), i / (k - 1)]} for i, a in enumerate(adapters)]}
    else:
        extra = {"runs": [{"preference": [i / (k - 1), 1 - i / (k - 1)], "path": f"runs/{a.name}"} for i, a in enumerate(adapters)]}
    Manifest(method=method, objectives=list(OBJECTIVES), base_model=str(base), extra=extra).save(out_dir)
    return out_dir


def one_torch_thread():
    """A fixture body: tiny models run fastest on one intra-op thread (and do not stall on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

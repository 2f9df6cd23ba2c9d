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


def tiny_tokenizer(out_dir: Path):
    from pluralign.worlds.reviews.tiny_lm import train_tokenizer

    return train_tokenizer(TEXTS, out_dir, vocab_size=300)


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

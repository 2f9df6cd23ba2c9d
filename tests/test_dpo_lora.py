"""DPO stages with LoRA: the adapter trains, then is merged so every stage saves a plain model folder."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from pluralign import load_policy
from pluralign.methods.dpo.trainer import train_dpo
from pluralign.training.dpo_stage import DimensionDPOConfig
from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, train_tokenizer

PAIRS = [
    {"prompt": f"Item {i}:", "chosen": f" great item {i}", "rejected": f" awful thing {i} broke"} for i in range(6)
]


def test_lora_stage_saves_merged_full_weights(tmp_path, capfd):
    tok = train_tokenizer([p["prompt"] + p["chosen"] + p["rejected"] for p in PAIRS] * 3, tmp_path / "tok", 300)
    base = build_tiny_gpt(tmp_path / "base", tok, n_layer=2, n_embd=32, n_positions=64)
    config = DimensionDPOConfig(
        output_dir=str(tmp_path / "dpo"), model_name_or_path=base, use_peft=True, lora_r=4, lora_alpha=8,
        lora_target_modules=["c_attn"], learning_rate=1e-2, per_device_train_batch_size=6, num_train_epochs=2,
        report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True,
    )  # fmt: skip
    out = train_dpo(config, {"good": PAIRS}, progress=None)
    printed = capfd.readouterr()
    assert "Computing reference log probs" not in printed.err + printed.out  # no library bar under disable_tqdm
    assert "dpo: trained 2 steps" in printed.out  # pluralign's own line instead of the raw log dicts
    assert not (out / "adapter_config.json").exists()
    trained, start = load_file(str(out / "model.safetensors")), load_file(f"{base}/model.safetensors")
    changed = {k for k, v in start.items() if not torch.equal(v, trained[k])}
    assert changed and all("c_attn" in k for k in changed)  # only the LoRA-targeted layers moved
    assert len(load_policy(out).generate(["Item 2:"], max_new_tokens=3)) == 1

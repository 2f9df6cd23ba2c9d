"""The vLLM backend: an engine on the model folder, prefix caching on, LoRA adapters served as ``LoRARequest`` on
their base model. ``import vllm`` happens only here, when the backend is asked for.

Building an engine costs tens of seconds (weights, CUDA graphs, KV cache) and holds most of the GPU, so a run
keeps one: :class:`VLLMEngines` hands out the same engine for every chunk of generation, switches LoRA
adapters on it as training writes new ones, and puts it to sleep (weights to CPU memory, KV cache freed)
while the run trains.
"""

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
        if "top_k" in gen:  # transformers' 0 (off) is vLLM's -1 (older vLLM rejects 0)
            out["top_k"] = int(gen.pop("top_k")) or -1
    else:
        out["temperature"] = 0.0
        for key in ("temperature", "top_p", "top_k"):
            gen.pop(key, None)
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

    ``sleep_mode=True`` builds it with vLLM's sleep mode, so that :meth:`sleep` can free the GPU between
    generations. Not run on the machines this project is developed on (no GPU, vllm not installable):
    treat this path as untested until it has run on a GPU.
    """

    def __init__(
        self, model_dir: str | Path, gpu_memory_utilization: float = 0.85, sleep_mode: bool = False, **engine_kwargs: Any
    ) -> None:
        try:
            from vllm import LLM  # guarded: only reached when the vllm backend is asked for
        except ImportError as exc:
            raise ConfigError("generation_backend 'vllm' needs the vllm package (pip install vllm) and a CUDA GPU") from exc

        self.base, self.adapter = vllm_model_source(model_dir)
        self.lora_id, self.asleep, self.sleep_mode = 1, False, sleep_mode
        engine_kwargs.setdefault("enable_prefix_caching", True)  # every steered prompt shares its tag prefix
        if self.adapter:
            engine_kwargs.setdefault("enable_lora", True)
            rank = json.loads((Path(self.adapter) / "adapter_config.json").read_text()).get("r", 16)
            engine_kwargs.setdefault("max_lora_rank", max(16, int(rank)))
        if sleep_mode:
            engine_kwargs.setdefault("enable_sleep_mode", True)
        self.engine = LLM(model=self.base, gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)

    def use_adapter(self, adapter_dir: str | Path) -> None:
        """Serve another LoRA adapter of the same base model: a new adapter id, so vLLM loads the new weights
        instead of the adapter it cached under the old id."""
        if str(adapter_dir) != self.adapter:
            self.adapter, self.lora_id = str(adapter_dir), self.lora_id + 1

    def sleep(self) -> None:
        """Free the GPU until the next :meth:`generate`: weights to CPU memory, KV cache dropped (sleep mode only)."""
        if self.sleep_mode and not self.asleep:
            self.engine.sleep(level=1)
            self.asleep = True

    def generate(self, ids: Sequence[Sequence[int]], **generation_kwargs: Any) -> list[str]:
        """One completion per prompt given as token ids (``pluralign.models.sequences.prompt_ids``: the BOS
        rule training used), so vLLM's own tokenisation (which adds a BOS to any text) never runs."""
        from vllm import SamplingParams

        if self.asleep:
            self.engine.wake_up()
            self.asleep = False
        params = SamplingParams(**to_sampling_kwargs(generation_kwargs))
        extra = {}
        if self.adapter:
            from vllm.lora.request import LoRARequest

            extra["lora_request"] = LoRARequest(f"pluralign-{self.lora_id}", self.lora_id, self.adapter)
        prompts = [{"prompt_token_ids": [int(t) for t in row]} for row in ids]
        outputs = self.engine.generate(prompts, params, use_tqdm=False, **extra)
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        """Release the engine and its GPU memory."""
        import gc

        import torch

        self.engine = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class VLLMEngines:
    """One vLLM engine for a whole run, keyed by the base weights it holds.

    :meth:`generator` returns the current engine when the asked-for model runs on it (the same folder, or a
    LoRA adapter of the same base model: RiC with ``use_peft`` trains adapters, so every iteration's model
    is served by the engine built for the first). A model with other base weights (full fine-tuning writes
    a new folder per stage) replaces the engine: the old one is closed first, then the new weights load.
    :meth:`release` puts the engine to sleep while the run trains; the next generation wakes it.
    """

    def __init__(self, gpu_memory_utilization: float = 0.85, **engine_kwargs: Any) -> None:
        self.gpu_memory_utilization, self.engine_kwargs = gpu_memory_utilization, engine_kwargs
        self.current: VLLMGenerator | None = None

    def generator(self, model_dir: str | Path) -> VLLMGenerator:
        base, adapter = vllm_model_source(model_dir)
        gen = self.current
        if gen is not None and gen.base == base and bool(gen.adapter) == bool(adapter):
            if adapter:
                gen.use_adapter(adapter)
            return gen
        self.close()
        self.current = VLLMGenerator(model_dir, self.gpu_memory_utilization, sleep_mode=True, **self.engine_kwargs)
        return self.current

    def release(self) -> None:
        """Free the GPU for training; the engine (and the weights it keeps in CPU memory) stays."""
        if self.current is not None:
            self.current.sleep()

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


_SHARED: VLLMEngines | None = None


def shared_engines() -> VLLMEngines:
    """The process's :class:`VLLMEngines`, for callers that do not keep their own."""
    global _SHARED
    if _SHARED is None:
        _SHARED = VLLMEngines()
    return _SHARED

"""Scale benchmark: Llama-architecture models built from a config (random weights) on synthetic tokens.

Three figures per size:

- ``sft_ratio``: median step time of RiC's SFT stage (:func:`pluralign.training.sft.run_sft` with a
  :class:`~pluralign.methods.ric.config.RiCConfig`, on reward-tagged prompts) over plain TRL
  ``SFTTrainer`` on the same rows, model, batch size and precision. Goal: <= 1.05.
- ``gen_tokens_per_s``: new tokens per second of each generation backend on the same prompts (fixed
  length: ``min_new_tokens = max_new_tokens``); ``vllm`` is ``null`` where it cannot run.
- ``peak_memory_mb``: peak memory of a few training steps with LoRA + gradient checkpointing, and with
  full fine-tuning, each in a fresh process (GPU: ``torch.cuda.max_memory_allocated``; CPU: peak RSS,
  which for ``tiny`` is the libraries' footprint, not the model's).

Sizes: ``tiny`` (CPU, a minute or two), ``0.5b`` and ``1.5b`` (Qwen2.5-0.5B / 1.5B shapes; a GPU).

    python benchmarks/scale.py --out results/scale_tiny.json --size tiny
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}  # fmt: skip
# per size: rows, batch size, prompt / completion words, timed steps, generation prompts and new tokens
WORKLOAD: dict[str, dict[str, int]] = {
    "tiny": dict(rows=256, batch=16, prompt_len=24, completion_len=40, gen_prompts=32, gen_tokens=32),
    "0.5b": dict(rows=512, batch=8, prompt_len=128, completion_len=256, gen_prompts=128, gen_tokens=128),
    "1.5b": dict(rows=512, batch=8, prompt_len=128, completion_len=256, gen_prompts=128, gen_tokens=128),
}
OBJECTIVES = ["helpful", "harmless"]


def build_model(size: str, folder: Path) -> int:
    """Write a random-weight Llama of ``size`` and a word-level tokenizer to ``folder``; returns the parameter count."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    spec = SIZES[size]
    words = ["<pad>", "<eos>", "<bos>"] + [f"t{i}" for i in range(min(spec["vocab_size"], 32000) - 3)]
    words += [f"<{n}>" for n in OBJECTIVES] + [str(x / 10) for x in range(-30, 31)]  # RiC's tags
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="t0"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")
    torch.manual_seed(0)
    config = LlamaConfig(**{**spec, "vocab_size": max(spec["vocab_size"], len(tok))}, max_position_embeddings=2048,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2)  # fmt: skip
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def synthetic_rows(size: str, seed: int = 0) -> list[dict[str, str]]:
    """RiC-tagged prompt / completion rows of random words (the tags as RiC's offline stage writes them)."""
    import numpy as np

    from pluralign.methods.ric.trainer import tagged_samples
    from pluralign.preferences.tags import TagTemplate

    w = WORKLOAD[size]
    rng = np.random.default_rng(seed)
    vocab = min(SIZES[size]["vocab_size"], 32000) - 3

    def words(n: int) -> str:
        return " " + " ".join(f"t{i}" for i in rng.integers(0, vocab, n))

    samples = [{"prompt": words(w["prompt_len"]), "response": words(w["completion_len"])} for _ in range(w["rows"])]
    z = rng.normal(size=(len(samples), len(OBJECTIVES))).round(1)
    return tagged_samples(samples, z, OBJECTIVES, TagTemplate(response_marker=None))


class StepTimer:
    """A TrainerCallback that records the wall time of every optimizer step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer._sync()
                timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer._sync()
                timer.steps.append(time.perf_counter() - timer.start)

        self.callback, self.steps, self.start = _Callback(), [], 0.0

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def median(self, skip: int = 2) -> float:
        return statistics.median(self.steps[skip:] or self.steps)


def sft_settings(size: str, steps: int, out: Path) -> dict[str, Any]:
    import torch

    w = WORKLOAD[size]
    gpu = torch.cuda.is_available()
    return dict(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=w["batch"], learning_rate=1e-4,
        max_length=w["prompt_len"] + w["completion_len"] + 16, save_strategy="no", report_to="none",
        logging_steps=10_000, disable_tqdm=True, gradient_checkpointing=False, bf16=gpu, use_cpu=not gpu, seed=0,
    )  # fmt: skip


def time_sft(size: str, model_dir: Path, rows: list[dict], steps: int, work: Path) -> dict[str, float]:
    """Median step time of plain TRL SFTTrainer and of RiC's SFT stage on the same rows and settings."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from pluralign.methods.ric.config import RiCConfig
    from pluralign.models.loading import load_tokenizer
    from pluralign.training.sft import run_sft

    tokenizer = load_tokenizer(str(model_dir))
    out: dict[str, list[float]] = {"trl": [], "ric": []}
    for rep in range(2):  # alternate, so a slow phase of a loaded machine hits both
        trl_timer = StepTimer()
        trainer = SFTTrainer(
            model=str(model_dir),
            args=SFTConfig(**sft_settings(size, steps, work / f"trl{rep}")),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[trl_timer.callback],
        )
        trainer.train()
        out["trl"].append(trl_timer.median())
        del trainer
        ric_timer = StepTimer()
        config = RiCConfig(**sft_settings(size, steps, work / f"ric{rep}"), model_name_or_path=str(model_dir))
        run_sft(str(model_dir), rows, config, work / f"ric{rep}", tokenizer=tokenizer, callbacks=[ric_timer.callback])
        out["ric"].append(ric_timer.median())
    trl, ric = min(out["trl"]), min(out["ric"])
    return {"trl_step_s": trl, "ric_step_s": ric, "sft_ratio": ric / trl}


def generation_speed(size: str, model_dir: Path, backends: list[str]) -> dict[str, float | None]:
    """New tokens per second of each backend on the same prompts (greedy, fixed length)."""
    import torch

    from pluralign.generation.batched import generate_texts
    from pluralign.generation.vllm import vllm_available
    from pluralign.models.loading import load_causal_lm, load_tokenizer

    w = WORKLOAD[size]
    rows = synthetic_rows(size, seed=1)[: w["gen_prompts"]]
    prompts = [r["prompt"] for r in rows]
    tokenizer = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir), dtype="bfloat16") if torch.cuda.is_available() else None
    model = model if model is not None else load_causal_lm(str(model_dir))
    kwargs = dict(max_new_tokens=w["gen_tokens"], min_new_tokens=w["gen_tokens"], do_sample=False)
    speeds: dict[str, float | None] = {}
    for backend in backends:
        if backend == "vllm" and not vllm_available():
            speeds[backend] = None
            continue
        generate_texts(backend, model, tokenizer, prompts[:4], model_dir=model_dir, batch_size=16, **kwargs)  # warm
        t = time.perf_counter()
        generate_texts(backend, model, tokenizer, prompts, model_dir=model_dir, batch_size=32, **kwargs)
        speeds[backend] = len(prompts) * w["gen_tokens"] / (time.perf_counter() - t)
    return speeds


def _peak_memory_child(size: str, model_dir: str, lora: bool, queue) -> None:
    import resource

    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    from pluralign.methods.ric.config import RiCConfig
    from pluralign.models.loading import load_tokenizer
    from pluralign.training.args import lora_config
    from pluralign.training.sft import run_sft

    with tempfile.TemporaryDirectory() as tmp:
        settings = {**sft_settings(size, 3, Path(tmp)), "gradient_checkpointing": lora}
        config = RiCConfig(**settings, model_name_or_path=model_dir)
        peft = lora_config(r=16, alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]) if lora else None
        rows = synthetic_rows(size)[: 3 * WORKLOAD[size]["batch"]]
        run_sft(model_dir, rows, config, Path(tmp) / "run", peft_config=peft, tokenizer=load_tokenizer(model_dir))
    if torch.cuda.is_available():
        queue.put(torch.cuda.max_memory_allocated() / 2**20)
    else:
        queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_memory(size: str, model_dir: Path) -> dict[str, float]:
    """Peak memory (MiB) of three RiC SFT steps, LoRA + gradient checkpointing vs full fine-tuning."""
    ctx = mp.get_context("spawn")
    out = {}
    for name, lora in (("lora_gradient_checkpointing", True), ("full", False)):
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_memory_child, args=(size, str(model_dir), lora, queue))
        proc.start()
        out[name] = round(queue.get(timeout=3600), 1)
        proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="timed SFT steps per run (default: 12 tiny, 20 GPU)")
    parser.add_argument("--backends", default="transformers,continuous,vllm")
    args = parser.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    steps = args.steps or (12 if args.size == "tiny" else 20)
    with tempfile.TemporaryDirectory(prefix="pluralign-scale-") as tmp:
        work = Path(tmp)
        params = build_model(args.size, work / "model")
        rows = synthetic_rows(args.size)
        sft = time_sft(args.size, work / "model", rows, steps, work)
        gen = generation_speed(args.size, work / "model", args.backends.split(","))
        memory = peak_memory(args.size, work / "model")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'cpu'})"
    result = {
        "size": args.size,
        "parameters": params,
        "device": device,
        "date": date.today().isoformat(),
        "torch_threads": torch.get_num_threads(),
        "workload": {**WORKLOAD[args.size], "timed_steps": steps},
        **{k: round(v, 4) for k, v in sft.items()},
        "gen_tokens_per_s": {k: (None if v is None else round(v, 1)) for k, v in gen.items()},
        "peak_memory_mb": memory,
        "notes": {"vllm": "null: vllm not installed or no CUDA GPU"} if gen.get("vllm", 0) is None else {},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"size {args.size} ({params / 1e6:.1f}M parameters) on {device}")
    print(f"SFT step: TRL {sft['trl_step_s'] * 1000:.1f} ms, RiC {sft['ric_step_s'] * 1000:.1f} ms, ratio {sft['sft_ratio']:.3f}")
    for k, v in gen.items():
        print(f"generation {k:<12} {'n/a' if v is None else f'{v:.1f} tokens/s'}")
    for k, v in memory.items():
        print(f"peak memory {k:<28} {v:.0f} MiB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    main()

"""Generation throughput: pluralign's batched generation against a batch-size-1 loop, in one run.

RiC's reference code generated one prompt at a time (``model.generate`` on a single prompt in a Python
loop). pluralign generates through :func:`pluralign.generation.batched.generate_batched` (left padding,
length-sorted batches). Both run on the same model, the same prompts and the same greedy decoding with a
fixed number of new tokens (``min_new_tokens = max_new_tokens``), so both produce exactly the same number
of tokens and the ratio of tokens per second is the speed-up. Default model: the demo world's SFT model.

    python benchmarks/generation_throughput.py --out results/throughput
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch

from pluralign.generation.batched import generate_batched
from pluralign.models.loading import load_causal_lm, load_tokenizer


@torch.no_grad()
def loop_batch_size_one(model, tokenizer, prompts: list[str], **generation_kwargs) -> tuple[list[str], int]:
    """The reference code's way: one ``model.generate`` call per prompt; returns texts and new-token count."""
    texts, tokens = [], 0
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        seqs = model.generate(**enc, pad_token_id=tokenizer.pad_token_id, **generation_kwargs)
        new = seqs[0, enc["input_ids"].shape[1] :]
        tokens += int(new.shape[0])
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return texts, tokens


def measure(model_dir: str, prompts: list[str], batch_size: int, max_new_tokens: int, repeats: int) -> dict:
    model = load_causal_lm(model_dir, device="cpu")
    tokenizer = load_tokenizer(model_dir)
    gen = {"max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens, "do_sample": False}
    generate_batched(model, tokenizer, prompts[:batch_size], batch_size=batch_size, **gen)  # warm-up
    batched_s, loop_s = [], []
    for _ in range(repeats):  # interleaved, so load changes from other processes hit both alike
        t = time.perf_counter()
        batched = generate_batched(model, tokenizer, prompts, batch_size=batch_size, **gen)
        batched_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        looped, loop_tokens = loop_batch_size_one(model, tokenizer, prompts, **gen)
        loop_s.append(time.perf_counter() - t)
    tokens = len(prompts) * max_new_tokens  # min_new_tokens == max_new_tokens: every row has exactly this many
    if loop_tokens != tokens:
        raise RuntimeError(f"the loop produced {loop_tokens} tokens, expected {tokens}")
    batched_tps = tokens / min(batched_s)
    loop_tps = tokens / min(loop_s)
    return {
        "model": model_dir,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prompts": len(prompts),
        "new_tokens_per_prompt": max_new_tokens,
        "batch_size": batch_size,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "batched_seconds": batched_s,
        "loop_seconds": loop_s,
        "batched_tokens_per_second": batched_tps,
        "loop_tokens_per_second": loop_tps,
        "speedup": batched_tps / loop_tps,
        "identical_greedy_outputs": sum(a == b for a, b in zip(batched, looped)) / len(prompts),
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()})",
        "date": date.today().isoformat(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a causal LM folder; default: the demo world's SFT model")
    parser.add_argument("--world_dir", default="demo_world", help="demo world cache folder (built when missing)")
    parser.add_argument("--n_prompts", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each; the fastest counts")
    parser.add_argument("--out", help="folder for throughput.json")
    args = parser.parse_args(argv)

    from pluralign.worlds.reviews.world import build_world

    world = build_world(args.world_dir)
    model_dir = args.model or world.base_model
    prompts = (world.eval_prompts * (args.n_prompts // len(world.eval_prompts) + 1))[: args.n_prompts]
    result = measure(model_dir, prompts, args.batch_size, args.max_new_tokens, args.repeats)
    print(f"{'generation':<26} {'tokens/s':>10}")
    print(f"{'batched (bs=' + str(args.batch_size) + ')':<26} {result['batched_tokens_per_second']:>10.1f}")
    print(f"{'loop, batch size 1':<26} {result['loop_tokens_per_second']:>10.1f}")
    print(
        f"speed-up {result['speedup']:.2f}x on {result['prompts']} prompts x {args.max_new_tokens} new tokens "
        f"({result['machine']}, {result['torch_threads']} torch threads, {result['date']}); "
        f"identical greedy outputs: {result['identical_greedy_outputs']:.0%}"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "throughput.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    main()

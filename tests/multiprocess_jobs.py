"""Every training command on tiny inputs, run by one ``accelerate launch --num_processes 2`` (gloo, CPU).

``build_assets(root)`` writes the tiny models and data files; ``job_argv(name, root)`` is the
``pluralign train ...`` command line of one job. Run as a script under ``accelerate launch`` it runs
the named jobs one after the other in the same two processes (process start costs several seconds;
launching once keeps the whole matrix within the suite's budget) and, per job and process, writes
``root/<job>/rank<r>.json`` ({"ok", "error", "world_size", "manifest_saves", "trained"}).

``trained`` follows every optimiser that stepped during the job, in the order of their first step: a
digest of each of its parameters before its first step ("start") and when the job ended ("end"), so
the test can tell that both processes trained the same weights, that training moved them, and that the
saved model holds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import traceback
from pathlib import Path

TINY_BACKBONE = '{"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}'
ITEMS = ["lamp", "desk", "chair", "bike", "phone", "kettle", "sofa", "clock"]
COMMON = ["--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--logging_steps", "1"]

# name -> what `load` gives back: "policy" (load_policy) or "reward_model" (load_reward_model)
JOBS = {
    "ric": "policy",
    "dpo": "policy",
    "spo": "policy",
    "modpo": "policy",
    "morlhf": "policy",
    "soups": "policy",
    "npdpo": "policy",
    "btl": "reward_model",
    "npbtl": "reward_model",
    "multihead": "reward_model",
    "classifier": "reward_model",
    "moslim": "policy",  # after multihead: its reward model
    "score": "scores",  # pluralign score: rows split between the processes
    "evaluate": "front",  # pluralign evaluate of the ric model: its grid split between the processes
}
LOGGED = "len=tests.scorers:rank_logged_length"  # logs which process scored which row to $SCORER_LOG


def build_assets(root: Path) -> None:
    """A 1-layer GPT-2 with its tokenizer, a prompt/response corpus, PKU-style pairs, user-typed pairs, ratings."""
    from pluralign.worlds.reviews.corpus import generate_corpus
    from pluralign.worlds.reviews.tiny_lm import build_tiny_gpt, tokenizer_texts, train_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    corpus = generate_corpus(8, 2, seed=5)
    typed = []
    for item in ITEMS:
        short, long_ = f"A {item}.", f"The {item} is a useful object that people keep at home every day."
        typed.append({"prompt": f"Tell me about the {item}.", "chosen": short, "rejected": long_, "attribute": "brief"})
        typed.append({"prompt": f"Tell me about the {item}.", "chosen": long_, "rejected": short, "attribute": "detailed"})
    pku = [line for line in (Path(__file__).parent / "fixtures" / "multidim" / "pku.jsonl").read_text().splitlines()]
    rng = random.Random(0)
    ratings = []
    for _ in range(64):
        good = rng.randint(0, 4)
        words = ["great"] * good + ["lamp"] * rng.randint(0, 4)
        ratings.append({"prompt": "Review the lamp.", "response": " ".join(words) or "ok", "positivity": good})
    texts = tokenizer_texts(corpus) + [json.dumps(r) for r in typed] + pku + ["[positivity=4/4] great lamp ok"] * 5
    tok = train_tokenizer(texts, root / "base", vocab_size=300)
    build_tiny_gpt(root / "base", tok, n_layer=1, n_embd=32, n_positions=128)
    (root / "corpus.jsonl").write_text("".join(json.dumps(s) + "\n" for s in corpus))
    (root / "typed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in typed))
    (root / "pku.jsonl").write_text("\n".join(pku) + "\n")
    (root / "ratings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ratings))
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"Review the {i}."}) + "\n" for i in ITEMS))


def job_argv(name: str, root: Path) -> list[str]:
    """``pluralign`` argv of one tiny job; its output goes to ``root/<name>/model``."""
    out, base = str(root / name / "model"), str(root / "base")
    lm = ["--model_name_or_path", base, "--output_dir", out]
    two = ["--objective", "sentiment", "conciseness"]
    dpo_like = [*lm, "--dataset", str(root / "pku.jsonl"), "--per_device_train_batch_size", "2", "--max_steps", "1"]
    dpo_like += ["--max_length", "64", "--gradient_checkpointing", "false", *COMMON]
    rl = ["--dataset", str(root / "corpus.jsonl"), *lm, *two, "--max_steps", "1", "--per_device_train_batch_size", "2"]
    rl += ["--num_generations", "2", "--max_completion_length", "4", *COMMON]
    rm = ["--dataset", str(root / "typed.jsonl"), "--output_dir", out, "--embedding_cache", str(root / "emb")]
    rm += ["--hidden_dim", "16", "--num_targets", "2", "--batch_tasks", "4", "--eval_fraction", "0", "--max_steps", "2"]
    jobs = {
        "ric": ["train", "ric", *lm, "--dataset", str(root / "corpus.jsonl"), *two, "--max_steps", "1",
                "--per_device_train_batch_size", "4", "--max_length", "64", "--online_iterations", "1",
                "--online_prompts", "4", "--online_offline_samples", "4", "--online_max_new_tokens", "4",
                "--generation_batch_size", "2", "--gradient_checkpointing", "false", *COMMON,
                "--generation_backend", "continuous"],  # test_ric_distributed covers the default backend
        "dpo": ["train", "dpo", *dpo_like, "--dimensions", "helpfulness"],
        "spo": ["train", "spo", *dpo_like, "--dimensions", "helpfulness", "harmlessness", "--alpha", "1.0"],
        "modpo": ["train", "modpo", *dpo_like, "--dimensions", "helpfulness", "--objective", "conciseness",
                  "--weights", "1,0", "0.5,0.5"],
        "morlhf": ["train", "morlhf", *rl, "--grid_points", "1"],
        "soups": ["train", "soups", *rl],
        "npdpo": ["train", "npdpo", *lm, "--dataset", str(root / "typed.jsonl"), "--embedding_cache",
                  str(root / "emb"), "--max_context", "2", "--contexts_per_pair", "1", "--np_hidden_dim", "16",
                  "--np_num_heads", "2", "--context_bank_size", "2", "--per_device_train_batch_size", "2",
                  "--max_steps", "1", "--max_length", "64", *COMMON],
        "btl": ["train", "reward-model", "--type", "btl", *rm],
        "npbtl": ["train", "reward-model", "--type", "npbtl", *rm, "--max_context", "2", "--num_heads", "2"],
        "multihead": ["train", "reward-model", "--type", "multihead", "--dataset", str(root / "ratings.jsonl"),
                      "--output_dir", out, "--objective", "positivity", "--num_classes", "5", "--from_scratch",
                      "--backbone_config_overrides", TINY_BACKBONE, "--input_format", "response", "--max_length",
                      "16", "--max_steps", "2", "--per_device_train_batch_size", "4", "--eval_fraction", "0.2",
                      "--use_cpu", "--disable_tqdm", "true"],
        "classifier": ["train", "reward-model", "--type", "classifier", "--dataset", str(root / "typed.jsonl"),
                       "--output_dir", out, "--model_name_or_path", base, "--max_length", "32", "--max_steps", "1",
                       "--warmup_steps", "0",  # RewardConfig warms up over 10% of the steps: step 1 at lr 0
                       "--per_device_train_batch_size", "2", "--eval_fraction", "0.25", *COMMON],
        "moslim": ["train", "moslim", *lm, "--reward_model", str(root / "multihead" / "model"), "--dataset",
                   str(root / "prompts.jsonl"), "--preferences_per_prompt", "1", "--max_steps", "1",
                   "--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "4",
                   "--gradient_checkpointing", "false", *COMMON],
        "score": ["score", "--dataset", str(root / "corpus.jsonl"), "--objective", LOGGED, "--objective",
                  "conciseness", "--out", out, "--batch_size", "3"],
        "evaluate": ["evaluate", "--model", str(root / "ric" / "model"), "--dataset", str(root / "corpus.jsonl"),
                     "--num_prompts", "3", "--grid_points", "2", "--objective", LOGGED.replace("len=", "sentiment="),
                     "--objective", "conciseness",
                     "--out", out, "--max_new_tokens", "3", "--no-do_sample"],
    }  # fmt: skip
    return jobs[name]


def digests(tensors) -> list[str]:
    """A short hash of each tensor's bytes (dtype and values): equal digests are bit-identical tensors."""
    import torch

    return [hashlib.sha256(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
            for t in tensors]  # fmt: skip


def follow_optimisers() -> dict[int, tuple]:
    """Record, for every optimiser's first step from now on, the digests of its parameters before it."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen: dict[int, tuple] = {}

    def before_step(optimizer, args, kwargs) -> None:
        if id(optimizer) not in seen:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            seen[id(optimizer)] = (optimizer, params, digests(params))

    register_optimizer_step_pre_hook(before_step)
    return seen


def main(root: Path, names: list[str]) -> int:
    """Run ``names`` in this process (one of ``accelerate launch``'s); record each job's outcome."""
    import torch.distributed as dist
    from accelerate.state import AcceleratorState

    from pluralign.cli import main as pluralign_main
    from pluralign.models.manifest import Manifest
    from pluralign.models.state import process_state

    process_state()
    rank = dist.get_rank() if dist.is_initialized() else 0
    saves: list[str] = []
    original_save = Manifest.save

    def counting_save(self, path, *args, **kwargs):
        saves.append(str(path))
        return original_save(self, path, *args, **kwargs)

    Manifest.save = counting_save
    optimisers = follow_optimisers()
    for name in names:
        saves.clear()
        optimisers.clear()  # the optimisers of this job only
        AcceleratorState._reset_state(reset_partial_state=True)  # as in a fresh process (the group stays)
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ["SCORER_LOG"] = str(root / name / "scorer.log")
        record = {"ok": False, "error": None, "rank": rank}
        try:
            code = pluralign_main(job_argv(name, root))
            record["ok"] = code == 0
            if code:
                record["error"] = f"exit code {code}"
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to show
            record["error"] = "".join(traceback.format_exception(exc))[-3000:]
        record["manifest_saves"] = list(saves)
        record["trained"] = [{"start": start, "end": digests(params)} for _, params, start in optimisers.values()]
        state = process_state()  # as the job's trainers left it
        record["world_size"], record["state_rank"] = state.num_processes, state.process_index
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"rank{rank}.json").write_text(json.dumps(record))
        print(f"[rank {rank}] {name}: {'ok' if record['ok'] else 'FAILED'}", flush=True)
        if dist.is_initialized():
            dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))

"""Load test of ``pluralign serve``: streaming clients, each with its own preference, old vs new serving paths.

For each served model and each serving configuration it starts ``pluralign serve`` in a subprocess on
loopback and runs N concurrent **streaming** clients (N from ``--clients``), each sending greedy requests
one after another with its own preference. It reports, per (model, configuration, N):

- time to first token (the first content chunk) p50 / p99, and the whole response's latency p50 / p99;
- tokens/s (completion tokens over wall time) and requests/s;
- errors, and mismatches: responses that differ from the model's answer for that request alone
  (``policy.generate([prompt], preference=w)``; for a LoRA bank, from its **merged** soup), so zero means no
  cross-talk between batched requests and every mixed answer equals its merged soup;
- the server process's peak memory (VmHWM), and for a LoRA bank the bytes of its adapters against the
  merged models the old path holds.

Requests are chat completions (the model's chat template applies). Each server answers one warm-up
request before the measured ones.

Models (default: built on ``builtin:smollm2-135m-instruct``, no training, since serving needs only the format):
a RiC model (SmolLM2 + RiC's manifest: tags in the prompt) and a Rewarded Soups LoRA bank (SmolLM2 + one
random LoRA adapter per objective). ``--ric DIR`` / ``--soups DIR`` serve trained models instead.
Configurations: ``fixed`` (``--backend transformers``: a new request waits for the running batch),
``continuous`` (``--backend continuous``: it joins at the next token), and for the bank ``fixed-merged``
(``--merge_adapters``: one merged model per preference, the path before per-row LoRA mixing).

    python benchmarks/serve_load.py --size tiny --out serve_load_tiny.json          # a quick check (tiny random model)
    python benchmarks/serve_load.py --clients 1,16,64 --requests 2 --max_tokens 32 --out serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

PROMPTS = [
    "Write a review of the camera.",
    "Give your opinion on the coffee maker.",
    "Describe your stay at the hotel.",
    "What did you think of the headphones?",
    "Review the pizza place.",
    "Tell me about the new phone.",
    "How was the train journey?",
    "Write a review of the running shoes.",
]
OBJECTIVES = ["helpfulness", "conciseness"]
CONFIGS = {
    "fixed": ["--backend", "transformers"],
    "continuous": ["--backend", "continuous"],
    "fixed-merged": ["--backend", "transformers", "--merge_adapters"],
}


# --- models -------------------------------------------------------------------------------------


def base_model(work: Path, size: str) -> Path:
    """SmolLM2 (``--size real``) or a tiny random Llama with SmolLM2's tokenizer and chat template."""
    from pluralign.models.builtin import resolve_model

    real = Path(resolve_model("builtin:smollm2-135m-instruct"))
    if size == "real":
        return real
    out = work / "tiny_base"
    if not (out / "config.json").is_file():
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(str(real))
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        LlamaForCausalLM(config).save_pretrained(str(out))
        tok.save_pretrained(str(out))
    return out


def ric_model(work: Path, base: Path) -> Path:
    """``base`` packaged as a RiC model (its weights linked, RiC's tag template and some objective statistics)."""
    from pluralign.models.manifest import Manifest
    from pluralign.preferences.tags import TagTemplate

    out = work / f"ric_{base.name}"
    out.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        if f.is_file() and not (out / f.name).exists():
            (out / f.name).symlink_to(f.resolve())
    stats = {n: {"mean": 0.0, "std": 1.0, "min": -2.0, "max": 2.0, "count": 100} for n in OBJECTIVES}
    Manifest(method="ric", objectives=OBJECTIVES, stats=stats, template=TagTemplate().to_dict()).save(out)
    return out


def soups_bank(work: Path, base: Path, rank: int) -> Path:
    """A Rewarded Soups model dir of random LoRA adapters on ``base``, one per objective."""
    from pluralign.models.manifest import Manifest

    out = work / f"soups_{base.name}_r{rank}"
    runs = {}
    for i, name in enumerate(OBJECTIVES):
        folder = out / "runs" / name
        runs[name] = f"runs/{name}"
        if (folder / "adapter_config.json").is_file():
            continue
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        torch.manual_seed(100 + i)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                            init_lora_weights=False)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), config)
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.mul_(0.05)  # a visible but moderate change of the base's answers
        model.save_pretrained(str(folder))
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    Manifest(method="soups", objectives=OBJECTIVES, base_model=str(base), extra={"runs": runs, "peft": True}).save(out)
    return out


def bank_memory(model: Path) -> dict:
    """Bytes of a LoRA bank as one base + adapters, against the merged models of the old path."""
    from pluralign.policies import load_policy

    policy = load_policy(model, device="cpu")
    if getattr(policy, "lora", None) is None:
        return {}
    base, adapters = policy.lora.base_bytes(), policy.lora.adapter_bytes()
    k = len(policy.lora.adapters)
    return {
        "adapters_bytes": adapters,
        "base_bytes": base,
        "as_adapters_bytes": base + adapters,
        "merged_members_bytes": k * base,  # the old path keeps every member merged (plus a template and cached soups)
        "merged_with_template_and_4_soups_bytes": (k + 1 + 4) * base,
    }


# --- load ----------------------------------------------------------------------------------------


def start_server(model: Path, port: int, flags: list[str], args: argparse.Namespace) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "pluralign.cli", "serve", "--model", str(model), "--port", str(port),
        "--batch_window_ms", str(args.batch_window_ms), "--max_batch_size", str(args.max_batch_size),
        "--max_tokens_limit", str(max(args.max_tokens, 64)), "--log_level", "warning", *flags,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PLURALIGN_API_KEY", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pluralign serve exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError("pluralign serve did not start in 300 s")
        time.sleep(0.3)


def peak_rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


async def stream_one(http: httpx.AsyncClient, job: dict) -> dict:
    """One streamed request: time to the first content chunk, whole time, text, completion tokens."""
    t0 = time.perf_counter()
    first, parts, usage = None, [], {}
    try:
        async with http.stream("POST", "/v1/chat/completions", json=job) as r:
            if r.status_code != 200:
                await r.aread()
                return {"ok": False, "status": r.status_code, "text": None, "ttft": None, "latency": time.perf_counter() - t0, "tokens": 0}
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise RuntimeError(chunk["error"]["message"])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        first = first if first is not None else time.perf_counter() - t0
                        parts.append(piece)
    except (httpx.HTTPError, RuntimeError) as exc:
        return {"ok": False, "status": type(exc).__name__, "text": None, "ttft": None, "latency": time.perf_counter() - t0, "tokens": 0}
    latency = time.perf_counter() - t0
    return {"ok": True, "status": 200, "text": "".join(parts), "ttft": first if first is not None else latency,
            "latency": latency, "tokens": usage.get("completion_tokens", 0)}


async def run_clients(base: str, jobs_per_client: list[list[dict]]) -> tuple[float, list[list[dict]]]:
    """Every client sends its jobs one after another, all clients at once."""
    n = len(jobs_per_client)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, timeout=1800, limits=limits) as http:

        async def client(jobs: list[dict]) -> list[dict]:
            return [await stream_one(http, job) for job in jobs]

        start = time.perf_counter()
        results = await asyncio.gather(*(client(jobs) for jobs in jobs_per_client))
        return time.perf_counter() - start, list(results)


def client_jobs(objectives: list[str], clients: int, requests: int, max_tokens: int) -> list[list[dict]]:
    """Client i's requests: its own preference (evenly spread over the simplex's edge), prompts in turn."""
    jobs = []
    for i in range(clients):
        w = i / (clients - 1) if clients > 1 else 0.5
        pref = dict(zip(objectives, [round(w, 6), round(1 - w, 6)]))
        jobs.append([
            {"messages": [{"role": "user", "content": PROMPTS[(i + j) % len(PROMPTS)]}], "preference": pref,
             "max_tokens": max_tokens,
             "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
            for j in range(requests)
        ])
    return jobs


def expected_answers(model: Path, jobs: list[list[dict]], max_tokens: int) -> dict[tuple, str]:
    """Each distinct request's answer generated alone (a LoRA bank: from its merged soup)."""
    from pluralign.models.manifest import Manifest
    from pluralign.policies import load_policy

    kwargs = {"mix_adapters": False} if Manifest.load(model).method in ("soups", "morlhf", "modpo") else {}
    policy = load_policy(model, **kwargs)
    out: dict[tuple, str] = {}
    for job in (j for client in jobs for j in client):
        key = _key(job)
        if key not in out:
            out[key] = policy.generate([job["messages"]], preference=job["preference"], max_new_tokens=max_tokens, do_sample=False)[0]
    return out


def _key(job: dict) -> tuple:
    return (job["messages"][-1]["content"], tuple(job["preference"].values()))


def summarise(name: str, config: str, clients: int, wall: float, results: list[list[dict]], expected: dict, jobs) -> dict:
    flat = [(r, j) for rs, js in zip(results, jobs) for r, j in zip(rs, js)]
    ok = [r for r, _ in flat if r["ok"]]
    ttft = np.array([r["ttft"] for r in ok]) * 1000 if ok else np.array([np.nan])
    lat = np.array([r["latency"] for r in ok]) * 1000 if ok else np.array([np.nan])
    tokens = sum(r["tokens"] for r in ok)
    mismatches = sum(r["ok"] and r["text"] != expected[_key(j)] for r, j in flat)
    return {
        "model": name, "config": config, "clients": clients, "requests": len(flat),
        "distinct_preferences": len({tuple(j["preference"].values()) for _, j in flat}),
        "wall_s": wall, "requests_per_s": len(flat) / wall, "tokens_per_s": tokens / wall,
        "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
        "ttft_fraction_of_latency_p50": float(np.median(ttft / lat)) if ok else None,
        "completion_tokens": tokens, "errors": len(flat) - len(ok), "mismatches": int(mismatches),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["real", "tiny"], default="real",
                        help="real: SmolLM2-135M; tiny: a 2-layer random Llama with its tokenizer (a quick check)")
    parser.add_argument("--ric", help="a trained RiC model dir to serve (default: SmolLM2 packaged as RiC)")
    parser.add_argument("--soups", help="a trained Soups LoRA bank dir (default: SmolLM2 + random adapters)")
    parser.add_argument("--models", default="ric,soups", help="which of ric, soups to run")
    parser.add_argument("--configs", default="fixed,continuous,fixed-merged",
                        help="serving configurations: fixed, continuous, fixed-merged (banks only)")
    parser.add_argument("--clients", default=None, help="concurrent streaming clients (default 1,16,64; tiny: 1,4,16)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max_tokens", type=int, default=None, help="default 32 (tiny: 8)")
    parser.add_argument("--lora_rank", type=int, default=16)
    parser.add_argument("--batch_window_ms", type=float, default=10.0)
    parser.add_argument("--max_batch_size", type=int, default=64)
    parser.add_argument("--work", default="runs/serve_load", help="where the packaged models are cached")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    tiny = args.size == "tiny"
    args.max_tokens = args.max_tokens or (8 if tiny else 32)
    levels = [int(c) for c in (args.clients or ("1,4,16" if tiny else "1,16,64")).split(",")]

    from pluralign.serve.background import free_port
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()

    work = Path(args.work) / args.size
    work.mkdir(parents=True, exist_ok=True)
    base = base_model(work, args.size)
    models = {}
    if "ric" in args.models:
        models["ric"] = Path(args.ric) if args.ric else ric_model(work, base)
    if "soups" in args.models:
        models["soups"] = Path(args.soups) if args.soups else soups_bank(work, base, args.lora_rank)
    configs = args.configs.split(",")

    rows, memory, servers = [], {}, []
    for name, model in models.items():
        memory[name] = bank_memory(model) if name == "soups" else {}
        all_jobs = {c: client_jobs(OBJECTIVES, c, args.requests, args.max_tokens) for c in levels}
        print(f"{name}: expected answers, each request alone ...", flush=True)
        expected = expected_answers(model, [j for c in levels for j in all_jobs[c]], args.max_tokens)
        for config in configs:
            if config == "fixed-merged" and name != "soups":
                continue
            port = free_port()
            proc = start_server(model, port, CONFIGS[config], args)
            base_url = f"http://127.0.0.1:{port}"
            health: dict = {}
            try:
                asyncio.run(run_clients(base_url, [all_jobs[levels[0]][0][:1]]))  # warm-up, not measured
                for clients in levels:
                    print(f"{name} · {config} · {clients} streaming clients ...", flush=True)
                    wall, results = asyncio.run(run_clients(base_url, all_jobs[clients]))
                    rows.append(summarise(name, config, clients, wall, results, expected, all_jobs[clients]))
                    if args.out:  # what is measured survives an interrupted run
                        Path(args.out).write_text(json.dumps({"partial": True, "rows": rows}, indent=2))
                health = httpx.get(base_url + "/health").json()
            finally:
                servers.append({"model": name, "config": config, "peak_rss_bytes": peak_rss_bytes(proc.pid),
                                "backend": health.get("backend")})
                proc.terminate()
                proc.wait(30)

    print(f"\nmax_tokens {args.max_tokens}, greedy, {args.requests} requests per client, each client its own preference")
    head = (f"{'model':>6} {'config':>13} {'clients':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'lat p50':>8} {'lat p99':>8} "
            f"{'tok/s':>8} {'req/s':>7} {'err':>4} {'mism':>5}")
    print(head)
    for r in rows:
        print(f"{r['model']:>6} {r['config']:>13} {r['clients']:>7} {r['ttft_p50_ms']:>9.0f} {r['ttft_p99_ms']:>9.0f} "
              f"{r['latency_p50_ms']:>8.0f} {r['latency_p99_ms']:>8.0f} {r['tokens_per_s']:>8.1f} {r['requests_per_s']:>7.2f} "
              f"{r['errors']:>4} {r['mismatches']:>5}")
    print("(ms; TTFT = time to the first streamed token; mismatches against each request's answer alone, merged soups for the bank)")
    for s in servers:
        rss = s["peak_rss_bytes"]
        print(f"server {s['model']} · {s['config']}: peak RSS {rss / 2**20:.0f} MiB" if rss else f"server {s['model']} · {s['config']}")
    if memory.get("soups"):
        m = memory["soups"]
        print(f"soups bank: base + adapters {m['as_adapters_bytes'] / 2**20:.1f} MiB (adapters {m['adapters_bytes'] / 2**20:.2f} MiB) "
              f"against {m['merged_members_bytes'] / 2**20:.1f} MiB of merged members")
    result = {
        "benchmark": "serve_load",
        "machine": os.environ.get("PLURALIGN_MACHINE", f"{os.cpu_count()}-core CPU"),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1min": os.getloadavg()[0],
        "size": args.size,
        "models": {k: str(v) for k, v in models.items()},
        "max_tokens": args.max_tokens,
        "requests_per_client": args.requests,
        "batch_window_ms": args.batch_window_ms,
        "max_batch_size": args.max_batch_size,
        "scenarios": rows,
        "servers": servers,
        "memory": memory,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 1 if any(r["errors"] or r["mismatches"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

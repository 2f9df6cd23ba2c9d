"""Load test of ``pluralign serve`` on loopback: N concurrent clients, each request with its own preference.

Starts ``pluralign serve --model DIR`` in a subprocess, sends the same set of greedy requests (prompts x
the preference grid) with 1 client and with N concurrent clients, and reports requests per second,
p50 / p99 latency, errors, the mean batch size the server formed, and how many responses differ from
what the model gives for that request alone (``policy.generate([prompt], preference=w)``, which is what
``pluralign generate --model DIR --preference w PROMPT`` runs; the first ``--cli_checks`` answers are
also checked against that command itself). Zero mismatches means no cross-talk between batched requests.

    python benchmarks/serve_load.py --model out/demo/model --clients 1,8 --requests 64 --out serve_load.json

Without ``--model`` it trains the demo's RiC model first (cached in ``--work``; minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

DEFAULT_PROMPTS = [
    "Write a review of the camera.",
    "Give your opinion on the coffee maker.",
    "Describe your stay at the hotel.",
    "What did you think of the headphones?",
    "Review the pizza place.",
    "Tell me about the new phone.",
    "How was the train journey?",
    "Write a review of the running shoes.",
]


def demo_model(work: Path, world_dir: Path | None = None) -> tuple[Path, list[str]]:
    """The demo's RiC model and eval prompts (built once, then read from ``work``; the world may be shared)."""
    from pluralign.worlds.reviews.ric import train_on_demo
    from pluralign.worlds.reviews.world import build_world

    world = build_world(world_dir or work / "world", progress=print)
    model_dir = train_on_demo(world, work / "ric", progress=print)
    return Path(model_dir), list(world.eval_prompts)


def start_server(model: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "pluralign.cli",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--batch_window_ms",
        str(args.batch_window_ms),
        "--max_batch_size",
        str(args.max_batch_size),
        "--max_tokens_limit",
        str(max(args.max_tokens, 64)),
        "--log_level",
        "warning",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
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
            raise RuntimeError("pluralign serve did not start in 180 s")
        time.sleep(0.3)


def cli_answer(model: Path, job: dict) -> str:
    """What ``pluralign generate --model DIR --preference ... PROMPT`` prints for one request (greedy)."""
    pref = ",".join(f"{n}={w!r}" for n, w in job["preference"].items())
    cmd = [
        sys.executable,
        "-m",
        "pluralign.cli",
        "generate",
        "--model",
        str(model),
        "--preference",
        pref,
        "--max_new_tokens",
        str(job["max_tokens"]),
        "--no-do_sample",
        job["prompt"],
    ]
    out = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


async def run_clients(base: str, jobs: list[dict], clients: int) -> tuple[float, list[dict]]:
    """Send ``jobs`` with ``clients`` concurrent connections; each client sends one request at a time."""
    queue: asyncio.Queue = asyncio.Queue()
    for i, job in enumerate(jobs):
        queue.put_nowait((i, job))
    results: list[dict] = [{} for _ in jobs]

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            try:
                i, job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t = time.perf_counter()
            try:
                r = await http.post("/v1/completions", json=job)
                ok = r.status_code == 200
                text = r.json()["choices"][0]["text"] if ok else None
                results[i] = {"ok": ok, "status": r.status_code, "text": text, "latency": time.perf_counter() - t}
            except httpx.HTTPError as exc:
                results[i] = {
                    "ok": False,
                    "status": type(exc).__name__,
                    "text": None,
                    "latency": time.perf_counter() - t,
                }

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return wall, results


def summarise(clients: int, runs: list[dict], expected: list[str]) -> dict:
    """Median throughput over rounds; latency percentiles over every request of every round."""
    results = [r for run in runs for r in run["results"]]
    lat = np.array([r["latency"] for r in results]) * 1000
    calls = sum(run["after"]["generate_calls"] - run["before"]["generate_calls"] for run in runs)
    served = sum(run["after"]["requests"] - run["before"]["requests"] for run in runs)
    rates = [len(run["results"]) / run["wall"] for run in runs]
    return {
        "clients": clients,
        "rounds": len(runs),
        "requests": len(results),
        "requests_per_s": float(np.median(rates)),
        "requests_per_s_each_round": rates,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": sum(not r["ok"] for r in results),
        "mismatches": sum(r["text"] != e for run in runs for r, e in zip(run["results"], expected)),
        "generate_calls": calls,
        "mean_batch": served / max(calls, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="trained model dir (default: train the demo's RiC model in --work)")
    parser.add_argument("--work", default="runs/serve_load", help="cache for the demo model")
    parser.add_argument("--world", help="an existing demo-world cache to reuse (default: WORK/world)")
    parser.add_argument("--clients", default="1,8", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--requests", type=int, default=64, help="requests per scenario and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the client levels (median req/s)")
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--batch_window_ms", type=float, default=10.0)
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--cli_checks", type=int, default=3, help="requests also checked against `pluralign generate`")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    from pluralign.generation.policy import load_policy
    from pluralign.preferences.weights import preference_grid
    from pluralign.serve.background import free_port

    if args.model:
        model, prompts = Path(args.model), DEFAULT_PROMPTS
    else:
        model, prompts = demo_model(Path(args.work), Path(args.world) if args.world else None)
    policy = load_policy(model)
    grid = preference_grid(len(policy.objectives))
    pairs = [(p, w) for p in prompts for w in grid]
    random.Random(0).shuffle(pairs)  # distinct (prompt, preference) pairs first, in a mixed order
    jobs = []
    for i in range(args.requests):
        prompt, weights = pairs[i % len(pairs)]
        jobs.append(
            {
                "prompt": prompt,
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "preference": dict(zip(policy.objectives, weights)),
            }
        )

    print(f"expected answers: {len(jobs)} requests generated one at a time in-process ...", flush=True)
    t = time.perf_counter()
    cache: dict[tuple, str] = {}
    expected = []
    for job in jobs:
        key = (job["prompt"], tuple(job["preference"].values()))
        if key not in cache:
            cache[key] = policy.generate(
                [job["prompt"]], preference=job["preference"], max_new_tokens=args.max_tokens, do_sample=False
            )[0]
        expected.append(cache[key])
    unbatched_s = time.perf_counter() - t
    cli_checked = min(args.cli_checks, len(jobs))
    print(f"checking {cli_checked} answers against the `pluralign generate` command ...", flush=True)
    cli_mismatches = sum(cli_answer(model, job) != expected[i].strip() for i, job in enumerate(jobs[:cli_checked]))
    distinct = len({(j["prompt"], tuple(j["preference"].values())) for j in jobs})
    del policy

    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(model, port, args)
    levels = [int(c) for c in args.clients.split(",")]
    runs: dict[int, list[dict]] = {c: [] for c in levels}
    try:
        for _ in range(args.rounds):  # rounds interleave the levels, so load from other work hits all alike
            for clients in levels:
                before = httpx.get(base + "/health").json()["batcher"]
                wall, results = asyncio.run(run_clients(base, jobs, clients))
                after = httpx.get(base + "/health").json()["batcher"]
                runs[clients].append({"wall": wall, "results": results, "before": before, "after": after})
    finally:
        proc.terminate()
        proc.wait(30)
    rows = [summarise(clients, runs[clients], expected) for clients in levels]

    print(
        f"\nmodel {model} · {len(jobs)} greedy requests, max_tokens {args.max_tokens}, "
        f"{distinct} distinct (prompt, preference) pairs · batch window {args.batch_window_ms} ms"
    )
    head = f"{'clients':>7} {'req/s*':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'mismatch':>8} {'calls':>6} {'mean batch':>10}"
    print(head)
    for r in rows:
        print(
            f"{r['clients']:>7} {r['requests_per_s']:>7.2f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {r['errors']:>6} "
            f"{r['mismatches']:>8} {r['generate_calls']:>6} {r['mean_batch']:>10.1f}"
        )
    print(f"* median over {args.rounds} interleaved rounds; latency percentiles pool every request of every round")
    print(f"in-process, one request at a time, no server: {len(cache) / unbatched_s:.2f} req/s")
    print(f"`pluralign generate` agrees with the in-process answer on {cli_checked - cli_mismatches}/{cli_checked}")
    result = {
        "benchmark": "serve_load",
        "machine": os.environ.get("PLURALIGN_MACHINE", f"{os.cpu_count()}-core CPU"),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1min": os.getloadavg()[0],  # other work sharing the cores makes every figure slower
        "model": str(model),
        "max_tokens": args.max_tokens,
        "batch_window_ms": args.batch_window_ms,
        "distinct_pairs": distinct,
        "in_process_unbatched_requests_per_s": len(cache) / unbatched_s,
        "cli_checked": cli_checked,
        "cli_mismatches": cli_mismatches,
        "scenarios": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    bad = cli_mismatches or any(r["errors"] or r["mismatches"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Which tag design lets RiC steer SmolLM2 in the chat world: the same world, the same training budget,
only the tags differ.

Variants (``ChatSettings`` fields; ``default`` is what ``pluralign demo --world chat`` uses):

- ``default``: quantile levels 0..4, on their own line at the start of the assistant's turn;
- ``prompt_end``: the same levels at the end of the user turn, before the assistant header (the paper's place);
- ``zscore``: integer z-scores (``<sentiment> -1``) at the start of the assistant's turn.

Each variant trains RiC (offline SFT + one online MORS iteration) on the world in ``--world_dir`` (built
on first use, shared by all variants) and evaluates its front beside the base model; prints a table of
hypervolume, steerability and range per variant and writes them as JSON. Every run is resumable
(``--work DIR/<variant>``); about 13 minutes a variant on 2 CPU cores:

    python benchmarks/chat_tags.py --world_dir runs/chat/world --variants default prompt_end zscore \
        --work runs/chat_tags --out chat_tags.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

VARIANTS: dict[str, dict] = {
    "default": {},
    "prompt_end": {"tag_position": "prompt_end"},
    "zscore": {"tag_levels": 0, "tag_format": "<{name}> {value:.0f}"},
}


def run_variant(name: str, world_dir: Path, work: Path) -> dict:
    from pluralign.demo.chat_demo import run_chat_demo
    from pluralign.demo.chat_world import ChatSettings

    out = work / name
    t = time.time()
    run_chat_demo(out, methods=("ric",), work_dir=world_dir, settings=ChatSettings(**VARIANTS[name]))
    front = next(f for f in json.loads((out / "front.json").read_text())["fronts"] if f["method"] == "ric")
    return {
        "variant": name,
        "settings": VARIANTS[name],
        "hypervolume": front["hypervolume"],
        "steerability": front["steerability"],
        "range": front.get("range"),
        "points": front["points"],
        "seconds": round(time.time() - t, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world_dir", type=Path, required=True, help="the chat world's folder (built if missing)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=Path("runs/chat_tags"))
    ap.add_argument("--out", type=Path, default=Path("chat_tags.json"))
    args = ap.parse_args()
    rows = [run_variant(v, args.world_dir, args.work) for v in args.variants]
    print(f"{'variant':12} {'HV':>7} {'steer rel':>10} {'steer sent':>11} {'range rel':>10} {'range sent':>11} {'s':>6}")
    for r in rows:
        st, rg = r["steerability"], r["range"] or [None, None]
        cells = [f"{x:.2f}" if x is not None else "n/a" for x in (*st, *rg)]
        print(f"{r['variant']:12} {r['hypervolume']:7.2f} {cells[0]:>10} {cells[1]:>11} {cells[2]:>10} {cells[3]:>11} {r['seconds']:6.0f}")
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

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


def run_variant(name: str, world_dir: Path, work: Path):
    """Train and evaluate one variant; its RiC front (from front.json), named after the variant."""
    from pluralign.evaluation.front import read_front_json
    from pluralign.worlds.chat.demo import run_chat_demo
    from pluralign.worlds.chat.world import ChatSettings

    out = work / name
    t = time.time()
    run_chat_demo(out, methods=("ric",), work_dir=world_dir, settings=ChatSettings(**VARIANTS[name]))
    names, fronts, _ = read_front_json(out / "front.json")
    front = next(f for f in fronts if f.method == "ric")
    front.method, front.wall_seconds = name, round(time.time() - t, 1)
    return names, front


def main() -> None:
    from pluralign.evaluation.pipeline import summary_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world_dir", type=Path, required=True, help="the chat world's folder (built if missing)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--work", type=Path, default=Path("runs/chat_tags"))
    ap.add_argument("--out", type=Path, default=Path("chat_tags.json"))
    args = ap.parse_args()
    results = [run_variant(v, args.world_dir, args.work) for v in args.variants]
    names, fronts = results[0][0], [f for _, f in results]
    print(summary_table(fronts, names))
    rows = [
        {"variant": f.method, "settings": VARIANTS[f.method], "hypervolume": f.hypervolume, "steerability": f.steerability,
         "range": f.range, "points": f.points, "seconds": f.wall_seconds}
        for f in fronts
    ]  # fmt: skip
    args.out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from pluralign.training.quiet import quiet_libraries

    quiet_libraries()  # pluralign's own progress only, no library bars
    main()

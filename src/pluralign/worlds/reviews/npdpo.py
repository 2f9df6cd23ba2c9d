"""NP-DPO on the demo world: two user types, one per objective (sentiment lovers and brevity lovers).

Type "sentiment" chose the more positive response of each pair, type "conciseness" the shorter one
(``world.pairs(name)``). The policy learns both from the choices alone; the evaluator's preference grid
reaches it through the choices banked in the model dir (w_i * k of type i's examples as the context).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pluralign.methods.npdpo.config import NPDPOConfig
from pluralign.methods.npdpo.trainer import train_npdpo
from pluralign.worlds.reviews.dpo import demo_settings

DEMO_PAIRS = 768  # per user type


def train_on_demo(world: Any, output_dir: Path, progress: Callable[[str], None] | None = print) -> Path:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = [dict(p, attribute=name) for name in world.objectives.names for p in world.pairs(name, DEMO_PAIRS)]
    data = output_dir / "training_pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    settings = demo_settings(world)
    settings.update(save_strategy="no", save_total_limit=None, np_learning_rate=1e-3, max_context=10)
    config = NPDPOConfig(
        output_dir=str(output_dir),
        dataset=str(data),
        # the SFT model's own end-token state as the choices' features: fast on a CPU, like the paper's use of
        # the policy's base LM (the sentence encoder needs minutes for the world's 3k responses here)
        embedding_model=world.base_model,
        embedding_pooling="last",
        embedding_cache=str(Path(world.work_dir) / "embedding_cache"),
        **settings,
    )
    return train_npdpo(config, progress or (lambda _msg: None))

"""One seed for a whole run (``pluralign demo`` / ``evaluate --seed``): Python, NumPy and torch RNGs.

Every random step of the pipeline also takes its own seed (world corpus, SFT and method training via the
TRL config's ``seed``, RiC's online plan and generation chunks, evaluation sampling), so reruns with the
same seed on the same machine (same torch build and thread count) give identical numbers; this call only
covers code that draws from the global generators.
"""

from __future__ import annotations


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(int(seed))

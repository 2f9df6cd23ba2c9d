"""Shared fixtures: a small demo world with its tiny pretrained GPT-2 (built once per test session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The benchmarks' own helper modules (cost_model, snapshots) are tested as they are imported by the scripts.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_WORLD = dict(n_prompts=300, responses_per_prompt=4, n_eval_prompts=24, pretrain_epochs=3.0, n_layer=2, n_embd=64)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The demo world at a fraction of its size (1200 samples, a 2-layer GPT-2): about 30 s to build."""
    from pluralign.worlds.reviews.world import WorldSettings, build_world

    return build_world(tmp_path_factory.mktemp("world"), progress=None, settings=WorldSettings(**TINY_WORLD))


def _steered_means(policy, world) -> dict[tuple[float, float], tuple[float, float]]:
    """Mean (sentiment, conciseness) of ``policy``'s sampled outputs on the world's eval prompts at
    w = (1, 0) and (0, 1), the same seed at each: what a steering test compares."""
    import numpy as np
    import torch

    prompts = world.eval_prompts
    means = {}
    for w in ((1.0, 0.0), (0.0, 1.0)):
        torch.manual_seed(0)
        texts = policy.generate(prompts, preference=list(w), max_new_tokens=40, do_sample=True, top_p=0.9, temperature=0.7)
        s = world.objectives.score(prompts, texts)
        means[w] = (float(np.mean(s["sentiment"])), float(np.mean(s["conciseness"])))
    return means


@pytest.fixture
def steered_means():
    """``steered_means(policy, world)``: the policy's mean objectives at w = (1, 0) and (0, 1)."""
    return _steered_means

"""Shared fixtures: a small demo world with its tiny pretrained GPT-2 (built once per test session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_WORLD = dict(n_prompts=300, responses_per_prompt=4, n_eval_prompts=24, pretrain_epochs=3.0, n_layer=2, n_embd=64)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The demo world at a fraction of its size (1200 samples, a 2-layer GPT-2): about 30 s to build."""
    from pluralign.demo.world import WorldSettings, build_world

    return build_world(tmp_path_factory.mktemp("world"), progress=None, settings=WorldSettings(**TINY_WORLD))

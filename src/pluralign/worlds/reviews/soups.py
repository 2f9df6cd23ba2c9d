"""Rewarded Soups on the demo world: one short RLOO run per objective from the world's SFT model."""

from __future__ import annotations

from functools import partial

from pluralign.methods.soups.config import SoupsConfig
from pluralign.methods.soups.trainer import train_soups
from pluralign.worlds.reviews.rl import train_rl_on_world

# train_on_demo(world, output_dir, progress=print, callbacks=None, **overrides), e.g. max_steps
train_on_demo = partial(train_rl_on_world, SoupsConfig, train_soups)

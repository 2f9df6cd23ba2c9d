"""MORLHF on the demo world: one short RLOO run per grid point from the world's SFT model."""

from __future__ import annotations

from functools import partial

from pluralign.methods.morlhf.config import MORLHFConfig
from pluralign.methods.morlhf.trainer import train_morlhf
from pluralign.worlds.reviews.rl import train_rl_on_world

# train_on_demo(world, output_dir, progress=print, callbacks=None, **overrides), e.g. grid_points, max_steps
train_on_demo = partial(train_rl_on_world, MORLHFConfig, train_morlhf)

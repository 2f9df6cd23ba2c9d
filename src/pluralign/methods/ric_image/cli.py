"""``pluralign train ric-image``: Rewards-in-Context for text-to-image diffusion models (diffusers + accelerate)."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import train_command
from pluralign.methods.ric_image.config import RiCImageConfig

HELP = "RiC for text-to-image: fine-tune a diffusion UNet on captions tagged with the images' rewards"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.ric_image.trainer import train_ric_image

    return train_command(RiCImageConfig, train_ric_image, argv, "ric-image")

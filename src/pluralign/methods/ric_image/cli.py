"""``pluralign train ric-image``: Rewards-in-Context for text-to-image diffusion models (diffusers + accelerate)."""

from __future__ import annotations

from collections.abc import Sequence

from pluralign.config import parse_config
from pluralign.methods.ric_image.config import RiCImageConfig

HELP = "RiC for text-to-image: fine-tune a diffusion UNet on captions tagged with the images' rewards"


def run(argv: Sequence[str]) -> int:
    from pluralign.methods.ric_image.trainer import train_ric_image

    config = parse_config(RiCImageConfig, argv, prog="pluralign train ric-image")
    out = train_ric_image(config)
    print(f"pluralign: RiC text-to-image model written to {out}")
    return 0

"""The embedded image world: captioned 32x32 shapes on textures, and a tiny text-to-image model pretrained on it.

Each image is a coloured shape (circle, square, triangle) on a background (plain, striped, checkered,
dotted), captioned ``"a red circle on a striped background"``. Two things the caption does not say vary
from image to image: the *vividness* v (colour saturation) and the *grain* (per-channel colour noise).
Grain follows vividness (grain ~ v + noise), so across the data vivid images are grainy: colourfulness
(Hasler-Suesstrunk) rises with both, while JPEG compressibility falls with grain. The two objectives
conflict in the data without being mirrors (a flat vivid image, rare in the data, has both). RiC has to
read the reward tags to move along (and past) that trade-off.

The model: a ~1.6M-parameter ``UNet2DConditionModel`` trained from scratch in pixel space on 2x2 patches
(``patch:2``: 32x32x3 images as 16x16x12 tensors) with a small word-level text encoder trained jointly
(``text_encoder: word``, :mod:`pluralign.models.word_encoder`): the UNet cross-attends to its states at 8x8 and
adds their attention-pooled summary to the time embedding (``addition_embed_type: text``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (0.0,),
    "orange": (0.08,),
    "yellow": (0.15,),
    "green": (0.33,),
    "blue": (0.62,),
    "purple": (0.78,),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("plain", "striped", "checkered", "dotted")
SIZE = 32
# compressibility is measured at the world's training resolution (32 px), as the reference measures Stable
# Diffusion's images at its 512 px
OBJECTIVES = [
    {"name": "compressibility", "type": "image", "scorer": "compressibility", "resolution": SIZE},
    "colourfulness=image:colourfulness",
]

UNET_CONFIG = {
    "sample_size": 16,
    "in_channels": 12,
    "out_channels": 12,
    "layers_per_block": 1,
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 64,
    "attention_head_dim": 16,
    "norm_num_groups": 16,
    # the pooled caption (reward tags included) also shifts every ResNet block through the time embedding:
    # vividness and grain are global properties of an image, which a global path expresses directly
    "addition_embed_type": "text",
    "addition_embed_type_num_heads": 4,
}


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def render(colour: str, shape: str, background: str, vivid: float, grain: float, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 float image in [0, 1]."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    bg_hue = (COLOURS[colour][0] + 0.5) % 1.0
    light = _hsv_to_rgb(bg_hue, 0.7 * vivid, 0.9)
    dark = _hsv_to_rgb(bg_hue, 0.9 * vivid, 0.45)
    period = int(rng.integers(6, 10))
    if background == "plain":
        mask = np.zeros((SIZE, SIZE), bool)
    elif background == "striped":
        mask = (xx // (period // 2)) % 2 == 0
    elif background == "checkered":
        mask = ((xx // (period // 2)) + (yy // (period // 2))) % 2 == 0
    else:  # dotted
        mask = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 4) ** 2
    img = np.where(mask[..., None], dark, light)
    cx, cy = rng.uniform(11, 21, size=2)
    r = rng.uniform(6, 9)
    if shape == "circle":
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
    elif shape == "square":
        inside = (np.abs(xx - cx) < r * 0.85) & (np.abs(yy - cy) < r * 0.85)
    else:
        inside = (yy > cy - r) & (yy < cy + r * 0.8) & (np.abs(xx - cx) < (yy - (cy - r)) * 0.6)
    fg = _hsv_to_rgb(COLOURS[colour][0], 0.15 + 0.85 * vivid, 0.95)
    img = np.where(inside[..., None], fg, img)
    img = img + grain * rng.normal(size=img.shape)
    return np.clip(img, 0.0, 1.0)


def sample_attributes(rng: np.random.Generator) -> dict:
    vivid = float(rng.uniform(0, 1))
    grain = float(np.clip(0.22 * vivid + 0.06 * rng.normal(), 0.0, 0.3))
    return {
        "colour": str(rng.choice(list(COLOURS))),
        "shape": str(rng.choice(SHAPES)),
        "background": str(rng.choice(BACKGROUNDS)),
        "vivid": vivid,
        "grain": grain,
    }


def caption(a: dict) -> str:
    return f"{'an' if a['colour'] == 'orange' else 'a'} {a['colour']} {a['shape']} on a {a['background']} background"


def write_world_images(folder: Path, n: int, seed: int = 0) -> Path:
    """An imagefolder (PNG files + metadata.jsonl with ``file_name`` and ``text``); written once."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "metadata.jsonl").is_file():
        return folder
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = sample_attributes(rng)
        img = render(a["colour"], a["shape"], a["background"], a["vivid"], a["grain"], rng)
        name = f"{i:05d}.png"
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / name)
        rows.append({"file_name": name, "text": caption(a), "vivid": a["vivid"], "grain": a["grain"]})
    tmp = folder / "metadata.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(folder / "metadata.jsonl")
    return folder


def eval_captions(n: int, seed: int = 1234) -> list[str]:
    rng = np.random.default_rng(seed)
    return [caption(sample_attributes(rng)) for _ in range(n)]


@dataclass
class ImageWorld:
    data: Path
    base_model: Path
    eval_prompts: list[str]
    objectives: list[str | dict]


def base_config(data: Path, out: Path, steps: int, **overrides):
    from pluralign.methods.ric_image.config import RiCImageConfig

    unet_cfg = out / "unet_config.json"
    out.mkdir(parents=True, exist_ok=True)
    unet_cfg.write_text(json.dumps(UNET_CONFIG))
    values = dict(
        output_dir=str(out),
        unet_config=str(unet_cfg),
        text_encoder="word",
        vae="patch:2",
        prediction_type="v_prediction",
        text_max_length=32,
        resolution=SIZE,
        dataset=str(data),
        conditioning=False,
        learning_rate=2e-3,
        lr_warmup_steps=20,
        per_device_train_batch_size=32,
        max_steps=steps,
        save_steps=100,
        save_total_limit=1,
        logging_steps=50,
        cache_text_embeddings=True,
        num_inference_steps=20,
        guidance_scale=2.0,
        use_ema=True,
        ema_decay=0.99,
    )
    values.update(overrides)
    return RiCImageConfig(**values)


def build_image_world(
    work: Path, n_images: int = 2000, pretrain_steps: int = 300, n_eval: int = 16, progress: Callable[[str], None] = print
) -> ImageWorld:
    """Images, then the plain caption-conditioned model (the unconditioned baseline) trained from scratch (both
    cached in ``work``)."""
    from pluralign.methods.ric_image.trainer import train_ric_image

    t = time.time()
    data = write_world_images(work / "images", n_images)
    progress(f"images: {n_images} captioned 32x32 images in {data} ({time.time() - t:.1f}s)")
    base = work / "base_model"
    if not (base / "unet" / "config.json").is_file():
        train_ric_image(base_config(data, base, pretrain_steps), progress=progress)
    progress(f"images: trained the unconditioned caption model ({time.time() - t:.1f}s)")
    return ImageWorld(data, base, eval_captions(n_eval), list(OBJECTIVES))

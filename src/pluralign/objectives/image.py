"""Image objectives: score (prompt, image) pairs to one float each, with the same ObjectiveSet statistics.

Built-ins (offline, ``name=image:<scorer>``):

- ``compressibility``: minus the JPEG size in KB at quality 95 (PIL), RiC's diffusion reward, measured after
  resizing to ``resolution`` x ``resolution`` (default 512, as the reference: the training resolution of
  Stable Diffusion v1.5), so that the score measures content, not pixel count; ``resolution: null`` keeps
  the native size;
- ``colourfulness``: Hasler and Suesstrunk's colourfulness metric (2003),
  ``sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)`` on 0-255 RGB. It conflicts with
  compressibility without mirroring it: saturated colour detail costs JPEG bytes, but a flat saturated
  image is both colourful and compressible, and grey noise is neither.
- ``clip`` (``name=image:clip`` with ``model=`` a local CLIP folder or hub id): CLIP score, 100 x cosine of
  the image and prompt embeddings; with ``head=`` a linear/MLP head on the L2-normalised image embedding
  (e.g. the LAION aesthetic predictor, safetensors or a state dict loaded with ``weights_only=True``) it is
  the aesthetic score instead.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.models.loading import check_model_source, load_error
from pluralign.objectives.base import Objective


def to_pil(image: Any):
    """A PIL RGB image from a PIL image or an HxWx3 uint8 / float [0, 1] array."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def image_digest(image: Any) -> str:
    """A content hash of an image's pixels (the scoring-cache key)."""
    pil = to_pil(image)
    return hashlib.sha1(f"{pil.size}".encode() + pil.tobytes()).hexdigest()


COMPRESSIBILITY_RESOLUTION = 512


def jpeg_compressibility(image: Any, quality: int = 95, resolution: int | None = COMPRESSIBILITY_RESOLUTION) -> float:
    """Minus the JPEG size in KB at ``quality`` (higher = more compressible), after a bicubic resize to
    ``resolution`` x ``resolution`` (the reference's ``img.resize((512, 512))``; None: the native size)."""
    from PIL import Image

    pil = to_pil(image)
    if resolution and pil.size != (resolution, resolution):
        pil = pil.resize((int(resolution), int(resolution)), Image.BICUBIC)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    return -buf.tell() / 1000.0


def colourfulness(image: Any) -> float:
    """Hasler and Suesstrunk's colourfulness of an RGB image (0 for any grey image)."""
    rgb = np.asarray(to_pil(image), dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


IMAGE_BUILTINS: dict[str, Callable[[Any], float]] = {
    "compressibility": jpeg_compressibility,
    "colourfulness": colourfulness,
    "colorfulness": colourfulness,
}


class ImageObjective(Objective):
    """Base of objectives whose "response" is an image: ``score(prompts, images)`` in input order."""

    def score(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} images")
        out: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            vals = self.score_batch(list(prompts[start : start + self.batch_size]), list(responses[start : start + self.batch_size]))
            out.extend(float(v) for v in vals)
        return out


class BuiltinImageObjective(ImageObjective):
    """One of :data:`IMAGE_BUILTINS`; ``quality`` and ``resolution`` (None: native size) apply to compressibility."""

    def __init__(
        self,
        name: str,
        scorer: str,
        quality: int = 95,
        resolution: int | None = COMPRESSIBILITY_RESOLUTION,
        batch_size: int = 64,
    ) -> None:
        if scorer not in IMAGE_BUILTINS and scorer != "clip":
            raise ConfigError(
                f"objective {name!r}: unknown image scorer {scorer!r}; use one of {[*IMAGE_BUILTINS, 'clip']}"
            )
        if resolution is not None and (not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1):
            raise ConfigError(
                f"objective {name!r}: resolution must be a positive integer (pixels, e.g. 512) or null for the native size, "
                f"got {resolution!r}"
            )
        self.name, self.scorer, self.quality, self.batch_size = name, scorer, int(quality), batch_size
        self.resolution = resolution

    @property
    def identity(self) -> str:
        if self.scorer != "compressibility":
            return f"image:{self.scorer}:v1"
        size = f":r{self.resolution}" if self.resolution else ""  # native size: the identity scores had before
        return f"image:compressibility:q{self.quality}{size}:v1"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        if self.scorer == "compressibility":
            return [jpeg_compressibility(im, self.quality, self.resolution) for im in responses]
        return [IMAGE_BUILTINS[self.scorer](im) for im in responses]


class CLIPImageObjective(ImageObjective):
    """CLIP score of (prompt, image), or an aesthetic head on the CLIP image embedding (``head=``)."""

    def __init__(
        self,
        name: str,
        model: str,
        head: str | None = None,
        batch_size: int = 16,
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoTokenizer, CLIPModel

        self.name, self.model_name, self.head_path, self.batch_size = name, model, head, batch_size
        source = check_model_source(model, what=f"CLIP model of objective {name!r}")
        try:
            self.model = CLIPModel.from_pretrained(source, trust_remote_code=trust_remote_code).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise load_error(model, f"CLIP model of objective {name!r}", exc) from exc
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.mean, self.std = _clip_normalisation(source)
        self.size = int(self.model.config.vision_config.image_size)
        self.head = _load_head(head, name).to(self.device) if head else None

    @property
    def identity(self) -> str:
        return f"image:clip:{self.model_name}:{self.head_path or 'clipscore'}:v1"

    def pixel_values(self, images: Sequence[Any]):
        """CLIP's preprocessing with PIL and numpy: resize the short side, centre-crop, normalise."""
        import torch
        from PIL import Image

        out = []
        for im in images:
            pil = to_pil(im)
            scale = self.size / min(pil.size)
            w, h = max(self.size, round(pil.width * scale)), max(self.size, round(pil.height * scale))
            pil = pil.resize((w, h), Image.BICUBIC)
            left, top = (w - self.size) // 2, (h - self.size) // 2
            arr = np.asarray(pil.crop((left, top, left + self.size, top + self.size)), dtype=np.float32) / 255.0
            out.append((arr - self.mean) / self.std)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(self.device)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        import torch

        with torch.no_grad():
            img = self.model.get_image_features(pixel_values=self.pixel_values(responses))
            img = getattr(img, "pooler_output", img)
            img = img / img.norm(dim=-1, keepdim=True)
            if self.head is not None:
                return self.head(img).squeeze(-1).float().cpu().tolist()
            tok = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt").to(self.device)
            txt = self.model.get_text_features(**tok)
            txt = getattr(txt, "pooler_output", txt)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            return (100.0 * (img * txt).sum(-1)).float().cpu().tolist()


def _clip_normalisation(source: str) -> tuple[np.ndarray, np.ndarray]:
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    cfg = Path(source) / "preprocessor_config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        mean, std = data.get("image_mean", mean), data.get("image_std", std)
    return np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)


def _load_head(path: str, name: str):
    """A stack of Linear layers (LAION aesthetic MLP: no activations) from its state dict, in key order."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"objective {name!r}: head file {path!r} does not exist; give a .safetensors or .pth file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    weights = [k for k in state if k.endswith("weight") and state[k].ndim == 2]
    if not weights:
        raise ConfigError(f"objective {name!r}: head file {path!r} holds no Linear weights")
    layers = []
    for k in weights:
        w = state[k]
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=k[: -len("weight")] + "bias" in state)
        lin.weight.data.copy_(w)
        if lin.bias is not None:
            lin.bias.data.copy_(state[k[: -len("weight")] + "bias"])
        layers.append(lin)
    return torch.nn.Sequential(*layers).eval()


def build_image_objective(name: str, scorer: str = "compressibility", **options: Any) -> ImageObjective:
    """``type: image`` objectives: a built-in scorer, or ``scorer: clip`` with ``model`` (and ``head``)."""
    if scorer == "clip":
        if "model" not in options:
            raise ConfigError(f"objective {name!r}: scorer clip needs model: a local CLIP folder or hub id")
        return CLIPImageObjective(name, **options)
    return BuiltinImageObjective(name, scorer, **options)

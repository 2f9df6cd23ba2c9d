"""Text-to-image diffusion mechanics shared by training and steering (diffusers + transformers).

A text-to-image model is four parts, laid out like a diffusers Stable Diffusion folder:

- ``unet/``: a diffusers ``UNet2DConditionModel`` (the part RiC fine-tunes);
- ``scheduler/``: its noise scheduler config (DDPM for training; DDIM built from it for sampling);
- a text encoder: frozen, ``<model>/text_encoder`` + ``<model>/tokenizer`` (Stable Diffusion's CLIP) or any
  transformers encoder (``builtin:all-minilm-l6-v2`` is the bundled sentence encoder); or ``word``, a small
  encoder trained from scratch with the UNet and saved as ``<model>/word_encoder`` (:mod:`pluralign.models.word_encoder`);
- a codec between pixels and the UNet's input: ``<model>/vae`` (``AutoencoderKL``) or ``patch:N``, the
  exact, parameter-free pixel (un)shuffle by N used by the tiny demo model (pixel-space diffusion on
  N x N patches).

Which encoder and codec a folder uses is written to ``t2i.json`` beside ``unet/``; a folder without it
(a Stable Diffusion checkpoint) uses its own ``text_encoder/``, ``tokenizer/`` and ``vae/`` subfolders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError
from pluralign.models.loading import check_model_source, load_error

T2I_FILE = "t2i.json"
BUILTIN_MINILM = "builtin:all-minilm-l6-v2"


@dataclass
class T2ISpec:
    """Where the frozen parts of a text-to-image model come from ("" = the model folder's subfolder)."""

    text_encoder: str = ""
    vae: str = ""
    text_max_length: int | None = None
    resolution: int = 512

    @classmethod
    def read(cls, model: str) -> T2ISpec:
        p = Path(model) / T2I_FILE
        if p.is_file():
            return cls(**json.loads(p.read_text()))
        return cls()

    def write(self, model_dir: str | Path) -> None:
        Path(model_dir, T2I_FILE).write_text(json.dumps(asdict(self), indent=2))


def _split_subfolder(source: str, default_base: str | None, sub: str) -> tuple[str, str | None]:
    if source:
        return source, None
    if not default_base:
        raise ConfigError(f"no {sub}: pass --{sub} (a folder or hub id) or a model_name_or_path holding {sub}/")
    return default_base, sub


class TextEncoder:
    """A frozen transformers encoder; ``encode(texts)`` -> (N, L, D) last hidden states, padded to L."""

    def __init__(self, source: str, base: str | None = None, max_length: int | None = None, device=None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if source == BUILTIN_MINILM:
            from pluralign.models.embeddings import resolve_encoder

            source = resolve_encoder(None)
        name, sub = _split_subfolder(source, base, "text_encoder")
        where = check_model_source(name, what="text encoder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(where, subfolder="tokenizer" if sub else "")
            self.model = AutoModel.from_pretrained(where, subfolder=sub or "").eval().requires_grad_(False)
        except (OSError, ValueError) as exc:
            raise load_error(name, "text encoder", exc) from exc
        self.device = torch.device(device or "cpu")
        self.model.to(self.device)
        limit = getattr(self.tokenizer, "model_max_length", 77)
        self.max_length = int(max_length or (limit if limit and limit < 10_000 else 77))
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, Any] | None = None

    def enable_cache(self) -> None:
        """Keep every encoded text in memory (the demo's captions repeat every epoch)."""
        self._cache = {}

    def encode(self, texts: Sequence[str]):
        import torch

        texts = list(texts)
        if self._cache is not None:
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if todo:
                for t, h in zip(todo, self._encode(todo)):
                    self._cache[t] = h
            return torch.stack([self._cache[t] for t in texts]).to(self.device)
        return self._encode(texts)

    def _encode(self, texts: list[str]):
        import torch

        tok = self.tokenizer(
            texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        ).to(self.device)
        mask = tok.get("attention_mask") if self.use_attention_mask else None
        with torch.no_grad():
            return self.model(input_ids=tok["input_ids"], attention_mask=mask).last_hidden_state

    @property
    def use_attention_mask(self) -> bool:
        """Whether the padding mask goes to the encoder: the rule of diffusers' Stable Diffusion pipeline
        (``encode_prompt``), a mask only where the encoder's config sets ``use_attention_mask``, so SD's CLIP
        gets none (it was trained without one: its padding states are part of what the UNet saw). Encoders of
        other families without that flag (BERT-style sentence encoders) run as they were pretrained, masked."""
        flag = getattr(self.model.config, "use_attention_mask", None)
        if flag is not None:
            return bool(flag)
        return not str(getattr(self.model.config, "model_type", "")).startswith("clip")

    def fit_caption(self, caption: str, suffix: str) -> str:
        """``caption`` cut at a token boundary so that ``caption + suffix`` (the reward tags) fits ``max_length``
        tokens with the suffix whole: the encoder truncates from the end, which would cut the tags first."""
        return fit_caption(self.tokenizer, caption, suffix, self.max_length)


def fit_caption(tokenizer: Any, caption: str, suffix: str, max_length: int) -> str:
    """The longest token-boundary prefix of ``caption`` with which ``caption + suffix`` tokenises to at most
    ``max_length`` tokens (special tokens included): the suffix (the reward tags) always survives whole.
    RiC's reference does the same with a fixed budget (the caption capped at 77 - 16 tokens)."""

    def fits(text: str) -> bool:
        return len(tokenizer(text + suffix)["input_ids"]) <= max_length

    if fits(caption):
        return caption
    if not fits(""):
        raise ConfigError(
            f"the reward tags {suffix.strip()!r} alone take more than the text encoder's {max_length} tokens; "
            "use a shorter tag_format or a larger text_max_length"
        )
    room = max_length - tokenizer.num_special_tokens_to_add() - len(tokenizer(suffix, add_special_tokens=False)["input_ids"])
    enc = tokenizer(caption, add_special_tokens=False, return_offsets_mapping=bool(tokenizer.is_fast))
    for keep in range(min(room, len(enc["input_ids"])), 0, -1):  # one step back if a cut word re-tokenises longer
        if tokenizer.is_fast:
            cut = caption[: enc["offset_mapping"][keep - 1][1]]
        else:
            cut = tokenizer.decode(enc["input_ids"][:keep]).strip()
        if fits(cut):
            return cut
    return ""


class PatchCodec:
    """Pixels in [-1, 1] <-> (3 N^2, H/N, W/N) tensors by pixel (un)shuffle: exact and parameter-free."""

    def __init__(self, factor: int) -> None:
        self.factor = int(factor)

    def channels(self) -> int:
        return 3 * self.factor**2

    def encode(self, pixels):
        import torch.nn.functional as F

        return F.pixel_unshuffle(pixels, self.factor)

    def decode(self, latents):
        import torch.nn.functional as F

        return F.pixel_shuffle(latents, self.factor)


class VAECodec:
    """Stable Diffusion's ``AutoencoderKL``, latents scaled by its ``scaling_factor``."""

    def __init__(self, source: str, subfolder: str | None, device=None) -> None:
        import torch
        from diffusers import AutoencoderKL

        where = check_model_source(source, what="VAE")
        try:
            self.vae = AutoencoderKL.from_pretrained(where, subfolder=subfolder).eval().requires_grad_(False)
        except (OSError, ValueError) as exc:
            raise load_error(source, "VAE", exc) from exc
        self.vae.to(torch.device(device or "cpu"))
        self.scale = float(self.vae.config.scaling_factor)

    def channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def encode(self, pixels):
        import torch

        with torch.no_grad():
            return self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample() * self.scale

    def decode(self, latents):
        import torch

        with torch.no_grad():
            return self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample


def build_text_encoder(spec: T2ISpec, model_dir: str | Path, base: str | None = None, device=None):
    """The trained model's text encoder: its own ``word_encoder/`` (``"word"``) or a frozen transformers one."""
    if spec.text_encoder == "word":
        from pluralign.models.word_encoder import WORD_DIR, WordEncoder

        return WordEncoder.load(Path(model_dir) / WORD_DIR, device=device)
    return TextEncoder(spec.text_encoder, base or str(model_dir), spec.text_max_length, device=device)


def build_codec(vae: str, base: str | None, device=None) -> PatchCodec | VAECodec:
    if vae.startswith("patch:"):
        try:
            return PatchCodec(int(vae.split(":", 1)[1]))
        except ValueError as exc:
            raise ConfigError(f"vae {vae!r}: write patch:N with N an integer, e.g. patch:2") from exc
    name, sub = _split_subfolder(vae, base, "vae")
    return VAECodec(name, sub, device=device)


def pil_to_tensor(images: Sequence[Any], resolution: int):
    """PIL images -> (N, 3, R, R) float tensor in [-1, 1] (resized and centre-cropped with PIL)."""
    import torch
    from PIL import Image

    arrs = []
    for im in images:
        im = im.convert("RGB")
        if im.size != (resolution, resolution):
            scale = resolution / min(im.size)
            im = im.resize((max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale))), Image.BICUBIC)
            left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
            im = im.crop((left, top, left + resolution, top + resolution))
        arrs.append(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()


def tensor_to_pil(pixels) -> list:
    from PIL import Image

    arr = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().to("cpu").numpy().astype(np.uint8)
    return [Image.fromarray(a.transpose(1, 2, 0)) for a in arr]


def ddim_scheduler(config: dict):
    """The sampling DDIM, built from the model's scheduler config as diffusers swaps schedulers
    (``DDIMScheduler.from_config``), with ``set_alpha_to_one=False`` unless the config names it: Stable
    Diffusion's setting (the last step ends at ``alphas_cumprod[0]``, the noise level the UNet was trained
    on), where DDIM's own default (True) would apply to any config that does not say, e.g. a DDPM one."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(dict(config), set_alpha_to_one=bool(config.get("set_alpha_to_one", False)))


class TextToImage:
    """UNet + scheduler + frozen text encoder + codec; :meth:`sample` draws images for captions."""

    def __init__(self, unet, scheduler_config: dict, text_encoder: TextEncoder, codec, resolution: int) -> None:
        self.unet, self.text_encoder, self.codec, self.resolution = unet.eval(), text_encoder, codec, resolution
        self.scheduler_config = dict(scheduler_config)

    @classmethod
    def load(cls, model_dir: str | Path, spec: T2ISpec | None = None, base: str | None = None, device=None) -> TextToImage:
        """Load ``model_dir``'s UNet and scheduler; encoder and codec as ``spec`` (default: its t2i.json)."""
        import torch
        from diffusers import DDPMScheduler, UNet2DConditionModel

        model_dir = str(model_dir)
        spec = spec or T2ISpec.read(model_dir)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        where = check_model_source(model_dir, what="text-to-image model")
        try:
            unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet")
            scheduler = DDPMScheduler.from_pretrained(where, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            raise load_error(model_dir, "text-to-image model", exc) from exc
        encoder = build_text_encoder(spec, model_dir, base, device=device)
        codec = build_codec(spec.vae, base or model_dir, device=device)
        return cls(unet.to(device), dict(scheduler.config), encoder, codec, spec.resolution)

    def sample(
        self,
        captions: Sequence[str],
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        seed: int = 0,
        batch_size: int = 64,
        seeds: Sequence[int] | None = None,
    ) -> list:
        """One image per caption (DDIM, classifier-free guidance against the empty caption); PIL images.

        Image i starts from noise seeded by ``seeds[i]`` (default ``seed + i``), so the same prompt position
        gets the same starting noise under every preference: fronts compare preferences, not noise draws.
        """
        import torch

        scheduler = ddim_scheduler(self.scheduler_config)
        device = next(self.unet.parameters()).device
        seeds = list(seeds) if seeds is not None else [int(seed) + i for i in range(len(captions))]
        size = self.unet.config.sample_size
        channels = self.unet.config.in_channels
        images: list = []
        with torch.no_grad():
            uncond = self.text_encoder.encode([""])
        for start in range(0, len(captions), batch_size):
            chunk = list(captions[start : start + batch_size])
            with torch.no_grad():
                cond = self.text_encoder.encode(chunk)
            latents = torch.stack(
                [
                    torch.randn((channels, size, size), generator=torch.Generator("cpu").manual_seed(int(s)))
                    for s in seeds[start : start + len(chunk)]
                ]
            ).to(device)
            latents = latents * scheduler.init_noise_sigma
            scheduler.set_timesteps(num_inference_steps)
            context = torch.cat([uncond.expand(len(chunk), -1, -1), cond]) if guidance_scale != 1.0 else cond
            for t in scheduler.timesteps:
                x = torch.cat([latents, latents]) if guidance_scale != 1.0 else latents
                x = scheduler.scale_model_input(x, t)
                with torch.no_grad():
                    eps = self.unet(x, t, encoder_hidden_states=context).sample
                if guidance_scale != 1.0:
                    eps_u, eps_c = eps.chunk(2)
                    eps = eps_u + guidance_scale * (eps_c - eps_u)
                latents = scheduler.step(eps, t, latents).prev_sample
            images += tensor_to_pil(self.codec.decode(latents))
        return images

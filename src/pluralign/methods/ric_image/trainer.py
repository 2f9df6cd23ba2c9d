"""RiC for text-to-image: score the training images -> fine-tune the UNet on reward-tagged captions -> model dir.

Stages (rerunning the same command resumes; nothing is recomputed):

1. score every (caption, image) with the K image objectives through the SQLite cache; fit the
   normalisation statistics and the quantile tables of the z-scores (``objectives.json``, ``rewards.json``);
2. train the UNet with the diffusion (epsilon / v) loss on ``caption <rm1> z1 <rm2> z2`` (the shared
   :class:`~pluralign.preferences.tags.TagTemplate`; a long caption is cut so that the text encoder reads
   the tags whole, :mod:`~pluralign.methods.ric_image.captions`), caption AND tags replaced by "" with
   ``caption_dropout`` for classifier-free guidance; accelerate runs it on 1..N devices; ``accelerate
   save_state`` checkpoints (UNet, optimizer, scheduler, EMA) every ``save_steps`` and a rerun continues
   from the last one. Each
   step's batch, dropout and noise are drawn from the seed and the step number, so a resumed run takes the
   same steps as an uninterrupted one;
3. export ``unet/`` (the EMA weights when ``use_ema``), ``scheduler/``, ``t2i.json`` and ``pluralign.json``.

With ``conditioning: false`` the same loop trains the plain caption-conditioned model (the demo's
pretraining, the "unconditioned" baseline): no objectives, no tags, no pluralign.json.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.errors import ConfigError, DataError
from pluralign.methods.ric_image.captions import caption_template, tagged_captions
from pluralign.methods.ric_image.config import RiCImageConfig
from pluralign.models.diffusion import T2ISpec, TextEncoder, build_codec, pil_to_tensor
from pluralign.models.manifest import Manifest
from pluralign.models.word_encoder import WORD_DIR, WORD_ENCODER
from pluralign.objectives import ObjectiveSet
from pluralign.preferences.rewards import MAPPINGS, QUANTILE_MAPPING, quantile_table
from pluralign.preferences.tags import TagTemplate

Progress = Callable[[str], None]
METHOD = "ric-image"


def step_draw(seed: int, step: int, micro: int, n: int, batch: int, dropout: float) -> tuple[np.ndarray, np.ndarray]:
    """The global batch of step ``step``: sample indices and which captions are dropped (deterministic)."""
    rng = np.random.default_rng([seed, step, micro])
    idx = rng.choice(n, size=batch, replace=n < batch)
    return idx, rng.random(batch) < dropout


def validate(config: RiCImageConfig) -> None:
    if not config.output_dir:
        raise ConfigError("output_dir is required: the folder for checkpoints and the trained model")
    if not config.dataset:
        raise ConfigError("dataset is required: an imagefolder, a local file or a hub id with image and caption columns")
    if not config.model_name_or_path and not config.unet_config:
        raise ConfigError("model_name_or_path (a diffusers model with unet/) or unet_config (train from scratch) is required")
    if config.conditioning and not config.objective:
        raise ConfigError("no objectives: pass --objective name=image:compressibility (repeatable) or 'objective:' in the config")
    if config.mapping not in (QUANTILE_MAPPING, *MAPPINGS):
        raise ConfigError(f"mapping {config.mapping!r} is not one of {QUANTILE_MAPPING}, {', '.join(MAPPINGS)}")
    if not 0.0 <= config.caption_dropout < 1.0:
        raise ConfigError(f"caption_dropout must be in [0, 1), got {config.caption_dropout}")
    if config.max_steps < 1 or config.save_steps < 1:
        raise ConfigError("max_steps and save_steps must be >= 1")


def load_image_dataset(config: RiCImageConfig):
    """A datasets.Dataset with the image and caption columns (a folder of images + metadata.jsonl works)."""
    import datasets

    from pluralign.data.loading import load_any

    path = Path(config.dataset).expanduser()
    if path.is_dir() and (path / "metadata.jsonl").is_file():
        try:
            ds = datasets.load_dataset("imagefolder", data_dir=str(path), split=config.dataset_split)
        except Exception as exc:  # datasets raises many types for malformed folders
            raise DataError(f"cannot read image folder {config.dataset!r}: {str(exc).splitlines()[0]}") from exc
    else:
        ds = load_any(config.dataset, split=config.dataset_split)
    for col, flag in ((config.image_column, "--image_column"), (config.caption_column, "--caption_column")):
        if col not in ds.column_names:
            raise DataError(
                f"dataset has no column {col!r} (columns: {', '.join(ds.column_names)}); pass {flag} NAME"
            )
    if config.max_samples:
        ds = ds.select(range(min(config.max_samples, len(ds))))
    if len(ds) == 0:
        raise DataError(f"dataset {config.dataset!r} is empty")
    return ds


def _rewards(config, ds, captions, out: Path, is_main: bool, wait, log) -> tuple[ObjectiveSet, np.ndarray]:
    from pluralign.objectives.scoring import ScoreCache, score_images

    if is_main and not (out / "rewards.json").is_file():
        objectives = ObjectiveSet.from_specs(config.objective)
        t = time.time()
        scores = score_images(
            captions,
            lambda i: ds[int(i)][config.image_column],
            objectives,
            ScoreCache(out / "score_cache.sqlite"),
            chunk_size=config.score_batch_size,
        )
        objectives.fit_stats(scores)
        objectives.save(out / "objectives.json")
        z = objectives.zscores(scores)
        tmp = out / "rewards.tmp"
        tmp.write_text(json.dumps({"names": objectives.names, "z": z.tolist()}))
        tmp.replace(out / "rewards.json")
        log(f"ric-image: scored {len(captions)} images with {objectives.names} in {time.time() - t:.1f}s")
    wait()
    objectives = ObjectiveSet.load(out / "objectives.json", build=False)
    z = np.asarray(json.loads((out / "rewards.json").read_text())["z"], dtype=np.float64)
    return objectives, z


def _build_unet(config: RiCImageConfig):
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from pluralign.models.loading import check_model_source, load_error

    if config.unet_config:
        p = Path(config.unet_config)
        if not p.is_file():
            raise ConfigError(f"unet_config {config.unet_config!r} does not exist; give a JSON UNet2DConditionModel config")
        torch.manual_seed(config.seed)
        unet = UNet2DConditionModel.from_config(json.loads(p.read_text()))
        if config.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"prediction_type {config.prediction_type!r} is not epsilon or v_prediction")
        scheduler = DDPMScheduler(
            num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=config.prediction_type
        )
        return unet, scheduler
    where = check_model_source(config.model_name_or_path, what="model_name_or_path")
    try:
        unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet")
        scheduler = DDPMScheduler.from_pretrained(where, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise load_error(config.model_name_or_path, "diffusion model", exc) from exc
    return unet, scheduler


def _word_encoder(config: RiCImageConfig, dim: int, texts: Sequence[str], spec: T2ISpec, device, log: Progress):
    """The jointly trained encoder: the starting model's ``word_encoder/`` grown by the new words (the reward
    tags, with fresh embeddings), or a new one over the training texts' words."""
    import torch

    from pluralign.models.word_encoder import WordEncoder

    torch.manual_seed(config.seed + 1)  # new embeddings (and a new encoder) start the same in every run
    base = Path(config.model_name_or_path or "") / WORD_DIR
    if config.model_name_or_path and base.is_dir():
        encoder = WordEncoder.load(base, device=device)
        added = encoder.extend(texts)
        log(f"ric-image: word encoder from {base}, {added} new words (reward tags)")
    else:
        encoder = WordEncoder.new(texts, dim, spec.text_max_length or 32, device=device)
        log(f"ric-image: new word encoder ({len(encoder.vocab)} words, {dim}-dim), trained with the UNet")
    if encoder.dim != dim:
        raise ConfigError(f"the word encoder is {encoder.dim}-dim but the UNet's cross_attention_dim is {dim}")
    return encoder


def _latest_checkpoint(ckpt_root: Path) -> tuple[int, Path | None]:
    found = [(int(p.name.split("_")[1]), p) for p in ckpt_root.glob("step_*") if (p / "done").is_file()]
    return max(found) if found else (0, None)


def train_ric_image(config: RiCImageConfig, progress: Progress | None = print) -> Path:
    """Run (or resume) RiC text-to-image training; returns ``config.output_dir``."""
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    validate(config)
    log = progress or (lambda _m: None)
    acc = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
    )
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_image_dataset(config)
    captions = [str(c) for c in ds[config.caption_column]]
    template = caption_template(config)
    objectives, z = None, None
    if config.conditioning:
        objectives, z = _rewards(config, ds, captions, out, acc.is_main_process, acc.wait_for_everyone, log)

    base_spec = T2ISpec.read(config.model_name_or_path) if config.model_name_or_path else T2ISpec()
    spec = T2ISpec(
        text_encoder=config.text_encoder or base_spec.text_encoder,
        vae=config.vae or base_spec.vae,
        text_max_length=config.text_max_length or base_spec.text_max_length,
        resolution=config.resolution,
    )
    unet, noise_scheduler = _build_unet(config)
    if spec.text_encoder == WORD_ENCODER:
        every = tagged_captions(captions, z, objectives.names if objectives else [], template, [False] * len(captions))
        encoder = _word_encoder(config, unet.config.cross_attention_dim, captions + every, spec, acc.device, log)
    else:
        encoder = TextEncoder(spec.text_encoder, config.model_name_or_path, spec.text_max_length, device=acc.device)
    if config.cache_text_embeddings:
        encoder.enable_cache()
    trainable = [encoder.model] if getattr(encoder, "trainable", False) else []
    codec = build_codec(spec.vae, config.model_name_or_path, device=acc.device)
    if unet.config.cross_attention_dim != encoder.dim:
        raise ConfigError(
            f"the UNet's cross_attention_dim is {unet.config.cross_attention_dim} but the text encoder gives "
            f"{encoder.dim}-dim states; use a matching text_encoder or unet_config"
        )
    ema = None
    if config.use_ema:
        from diffusers import UNet2DConditionModel

        ema = EMAModel(unet.parameters(), decay=config.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config)
    unet.train()
    for m in trainable:
        m.train()
    params = [p for m in (unet, *trainable) for p in m.parameters()]
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
    lr_scheduler = get_scheduler(
        "constant_with_warmup", optimizer=optimizer, num_warmup_steps=config.lr_warmup_steps * acc.num_processes
    )
    unet, *trainable, optimizer, lr_scheduler = acc.prepare(unet, *trainable, optimizer, lr_scheduler)
    if trainable:
        encoder.model = trainable[0]
    if ema is not None:
        ema.to(acc.device)
        acc.register_for_checkpointing(ema)

    ckpt_root = out / "checkpoints"
    start, ckpt = _latest_checkpoint(ckpt_root)
    if ckpt is not None:
        acc.load_state(str(ckpt))
        log(f"ric-image: resumed from {ckpt} (step {start})")
    names = objectives.names if objectives is not None else []
    world, rank = acc.num_processes, acc.process_index
    global_batch = config.per_device_train_batch_size * world
    t0, running = time.time(), []
    for step in range(start, config.max_steps):
        for micro in range(config.gradient_accumulation_steps):
            idx, drop = step_draw(config.seed, step, micro, len(ds), global_batch, config.caption_dropout)
            mine, my_drop = idx[rank::world], drop[rank::world]
            texts = tagged_captions(
                [captions[i] for i in mine], z[mine] if z is not None else None, names, template, my_drop,
                fit=encoder.fit_caption,
            )
            pixels = pil_to_tensor([ds[int(i)][config.image_column] for i in mine], config.resolution).to(acc.device)
            gen = torch.Generator("cpu").manual_seed(int(config.seed) * 1_000_003 + step * 1009 + micro * 31 + rank)
            with torch.no_grad():
                latents = codec.encode(pixels).float()
            with torch.set_grad_enabled(bool(trainable)):
                context = encoder.encode(texts)
            noise = torch.randn(latents.shape, generator=gen).to(acc.device)
            if config.noise_offset:
                noise = noise + config.noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1), generator=gen).to(acc.device)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen)
            timesteps = timesteps.to(acc.device)
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            if noise_scheduler.config.prediction_type == "v_prediction":
                target = noise_scheduler.get_velocity(latents, noise, timesteps)
            else:
                target = noise
            with acc.accumulate(unet):
                pred = unet(noisy, timesteps, encoder_hidden_states=context).sample
                loss = F.mse_loss(pred.float(), target.float())
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            running.append(float(loss.detach()))
        if ema is not None:
            ema.step(acc.unwrap_model(unet).parameters())
        done = step + 1
        if done % config.logging_steps == 0:
            log(f"ric-image: step {done}/{config.max_steps} loss {np.mean(running):.4f} ({time.time() - t0:.1f}s)")
            running = []
        if done % config.save_steps == 0 or done == config.max_steps:
            _checkpoint(acc, ckpt_root / f"step_{done}", config.save_total_limit)

    if acc.is_main_process:
        final = acc.unwrap_model(unet)
        if ema is not None:
            ema.copy_to(final.parameters())
        final.save_pretrained(out / "unet", safe_serialization=True)
        if trainable:
            encoder.model = acc.unwrap_model(trainable[0])
            encoder.save(out / WORD_DIR)
        noise_scheduler.save_pretrained(out / "scheduler")
        spec.write(out)
        if objectives is not None:
            _manifest(config, objectives, z, template).save(out)
    acc.wait_for_everyone()
    return out


def _checkpoint(acc, path: Path, keep: int) -> None:
    acc.save_state(str(path))
    if acc.is_main_process:
        (path / "done").write_text("ok")
        steps = sorted((int(p.name.split("_")[1]), p) for p in path.parent.glob("step_*") if (p / "done").is_file())
        for _, old in steps[: max(0, len(steps) - max(1, keep))]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def _manifest(config: RiCImageConfig, objectives: ObjectiveSet, z: np.ndarray, template: TagTemplate) -> Manifest:
    extra: dict[str, Any] = {
        "modality": "image",
        "quantile_tables": {n: quantile_table(z[:, i]) for i, n in enumerate(objectives.names)},
        "quantile_top": config.quantile_top,
        "caption_dropout": config.caption_dropout,
        "num_inference_steps": config.num_inference_steps,
        "guidance_scale": config.guidance_scale,
        "use_ema": config.use_ema,
        "max_steps": config.max_steps,
    }
    return Manifest.for_objectives(
        METHOD,
        objectives,
        template=template.to_dict(),
        mapping=config.mapping,
        base_model=config.model_name_or_path,
        extra=extra,
    )

"""RiCImageConfig: the options of ``pluralign train ric-image``.

TRL has no diffusion trainer to extend (DDPO left TRL), so this is a plain dataclass read the TRL way
(``--config FILE.yaml`` + overriding flags); its names follow TRL/transformers' ``TrainingArguments``
where they mean the same thing (learning_rate, max_steps, save_steps, gradient_accumulation_steps, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RiCImageConfig:
    """Options of ``pluralign train ric-image`` (defaults: the reference recipe on Stable Diffusion v1.5)."""

    output_dir: str | None = field(default=None, metadata={"help": "Where checkpoints and the model go."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Starting model: a diffusers folder or hub id with unet/ and scheduler/."}
    )
    unet_config: str | None = field(
        default=None, metadata={"help": "JSON UNet2DConditionModel config: train a UNet from scratch instead."}
    )
    text_encoder: str = field(
        default="",
        metadata={
            "help": "Text encoder: '' = the model's frozen text_encoder/, builtin:all-minilm-l6-v2, a folder or hub id "
            "(frozen); word = a small word-level encoder trained with the UNet (dim: the UNet's cross_attention_dim)."
        },
    )
    prediction_type: str = field(
        default="epsilon", metadata={"help": "From-scratch UNets: epsilon | v_prediction (pretrained: its scheduler's)."}
    )
    vae: str = field(default="", metadata={"help": "'' = the model's vae/; patch:N = pixel-space on N x N patches."})
    text_max_length: int | None = field(default=None, metadata={"help": "Caption tokens (default: the tokenizer's)."})
    resolution: int = field(default=512, metadata={"help": "Training image size (pixels, square)."})
    # data
    dataset: str | None = field(default=None, metadata={"help": "Images + captions: hub id, imagefolder or file."})
    dataset_split: str = field(default="train", metadata={"help": "Split to load."})
    image_column: str = field(default="image", metadata={"help": "Column with the images."})
    caption_column: str = field(default="text", metadata={"help": "Column with the captions."})
    max_samples: int | None = field(default=None, metadata={"help": "Use at most this many images."})
    # objectives and tags
    objective: list[str] = field(
        default_factory=list,
        metadata={"help": "Objective, repeatable: name=image:compressibility | name=image:colourfulness (YAML: dicts)."},
    )
    score_batch_size: int = field(default=256, metadata={"help": "Images per scoring chunk (committed to the cache)."})
    conditioning: bool = field(
        default=True, metadata={"help": "Append reward tags (RiC); false trains the plain caption-conditioned model."}
    )
    tag_format: str = field(default="<{name}> {value:.1f}", metadata={"help": "Format of one reward tag."})
    tag_separator: str = field(default=" ", metadata={"help": "Text between tags."})
    caption_dropout: float = field(
        default=0.1, metadata={"help": "Probability of replacing caption AND tags by '' (classifier-free guidance)."}
    )
    mapping: str = field(default="quantile", metadata={"help": "Preference-to-reward mapping: quantile | linf | l2 | linear | linf_mid."})
    quantile_top: float = field(default=0.9999999, metadata={"help": "Quantile the dominant objective asks for."})
    # optimisation
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (constant after warm-up)."})
    lr_warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Images per device per step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps to accumulate."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps in total (resumed runs count on)."})
    save_steps: int = field(default=500, metadata={"help": "Checkpoint every N steps (accelerate save_state)."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints to keep."})
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every N steps."})
    mixed_precision: str = field(default="no", metadata={"help": "accelerate mixed precision: no | fp16 | bf16."})
    use_ema: bool = field(default=False, metadata={"help": "Keep an EMA of the UNet (exported instead of the raw one)."})
    ema_decay: float = field(default=0.9999, metadata={"help": "EMA decay."})
    noise_offset: float = field(default=0.0, metadata={"help": "Noise offset (0 = plain DDPM noise)."})
    cache_text_embeddings: bool = field(
        default=False, metadata={"help": "Keep encoded captions in memory (small datasets only)."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of batches, dropout, noise and the from-scratch UNet."})
    # inference defaults written to pluralign.json
    num_inference_steps: int = field(default=50, metadata={"help": "Sampling steps at inference (DDIM)."})
    guidance_scale: float = field(default=7.5, metadata={"help": "Classifier-free guidance scale at inference."})

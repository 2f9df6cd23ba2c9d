"""RiC for text-to-image run as the reference and diffusers run it (issue 23, items 5-7).

- compressibility is measured at a fixed resolution (the reference resizes to 512 x 512 before the JPEG
  encoding), so it scores content, not pixel count;
- a long caption is cut so that the text encoder (77 tokens for Stable Diffusion's CLIP) still reads the
  reward tags, in training and in steering;
- Stable Diffusion's CLIP text encoder gets no attention mask (diffusers' pipeline passes none), and the
  sampling DDIM keeps ``set_alpha_to_one=False``.

The CLIP parts are tiny and random: a character-level CLIP tokenizer (CLIP's pre-tokenisation and special
tokens, no merges) and a one-layer ``CLIPTextModel``, in Stable Diffusion's folder layout.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pluralign.objectives import ObjectiveSet

NAMES = ["compressibility", "colourfulness"]
LONG = (
    "a photograph of a small red wooden house with a green door and white windows standing alone on a "
    "grassy hill under a cloudy evening sky, with a dirt road, a fence and a few sheep in the foreground"
)
TINY_UNET = {
    "sample_size": 16,
    "in_channels": 12,
    "out_channels": 12,
    "layers_per_block": 1,
    "block_out_channels": [16, 16],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 16,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}


def _scene(size: int) -> Image.Image:
    """The same picture drawn at ``size`` x ``size``: a sky gradient, a sun, a house, stripes of grass."""
    im = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(im)
    s = size / 64
    for y in range(size):
        d.line([(0, y), (size, y)], fill=(40 + int(150 * y / size), 90, 200 - int(120 * y / size)))
    d.ellipse([44 * s, 6 * s, 58 * s, 20 * s], fill=(250, 220, 40))
    d.rectangle([12 * s, 30 * s, 36 * s, 52 * s], fill=(180, 40, 30))
    d.polygon([(10 * s, 30 * s), (24 * s, 18 * s), (38 * s, 30 * s)], fill=(90, 50, 20))
    for k in range(8):
        d.rectangle([0, (52 + k * 1.5) * s, size, (52.75 + k * 1.5) * s], fill=(30, 120 + 10 * k, 40))
    return im


# ---------------------------------------------------------------- 5. compressibility at a fixed resolution


def test_compressibility_scores_the_same_picture_the_same_at_any_native_size():
    objectives = ObjectiveSet.from_specs(["c=image:compressibility"])
    small, large = _scene(128), _scene(1024)
    s_small, s_large = objectives.score(["x", "x"], [small, large])["c"]
    assert s_small == pytest.approx(s_large, rel=0.1)  # at native size the 1024 px copy costs ~30x the bytes
    # it still tells pictures apart: a flat image is more compressible than the scene, noise much less
    flat = Image.new("RGB", (200, 300), (120, 120, 120))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    s_flat, s_noise = objectives.score(["x", "x"], [flat, noise])["c"]
    assert s_flat > s_small > s_noise


def test_compressibility_resolution_is_an_option_and_part_of_the_cache_key():
    from pluralign.errors import ConfigError

    spec = {"name": "c", "type": "image", "scorer": "compressibility"}
    default, native, r64 = (
        ObjectiveSet.from_specs([dict(spec, **kw)])["c"] for kw in ({}, {"resolution": None}, {"resolution": 64})
    )
    assert default.resolution == 512
    small, large = _scene(128), _scene(1024)
    a, b = native.score(["x", "x"], [small, large])
    assert b < 5 * a  # native size: the large copy scores as a much worse (bigger) file
    assert r64.score(["x"], [large])[0] == pytest.approx(r64.score(["x"], [small])[0], rel=0.1)
    assert len({default.identity, native.identity, r64.identity}) == 3  # cached scores never mix resolutions
    with pytest.raises(ConfigError, match="resolution"):
        ObjectiveSet.from_specs([dict(spec, resolution=0)])


def test_the_image_world_measures_compressibility_at_its_training_resolution():
    from pluralign.worlds.images.world import OBJECTIVES, SIZE

    objectives = ObjectiveSet.from_specs(OBJECTIVES)
    assert objectives["compressibility"].resolution == SIZE == 32


# ---------------------------------------------------------------- a tiny CLIP in Stable Diffusion's layout


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.-<>_,")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """``text_encoder/`` (a random 16-dim CLIPTextModel) + ``tokenizer/`` (77 tokens), as in an SD folder."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    root = tmp_path_factory.mktemp("tiny_sd")
    tok = _clip_tokenizer()
    tok.save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModel(cfg).save_pretrained(root / "text_encoder")
    # the flat layout (tokenizer and model in one folder) is what `text_encoder: FOLDER` reads
    tok.save_pretrained(root / "flat")
    CLIPTextModel(cfg).save_pretrained(root / "flat")
    return root


def _tags_survive(tok, text: str, tags: str) -> bool:
    """``tags`` are the last tokens the encoder reads of ``text`` (a 77-token window, as the pipeline pads)."""
    ids = tok(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
    want = tok(tags, add_special_tokens=False)["input_ids"]
    end = ids.index(tok.eos_token_id, 1)
    return ids[end - len(want) : end] == want


# ---------------------------------------------------------------- 6. the tags survive a long caption


def _long_caption_images(folder, n: int = 4):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        arr = np.full((32, 32, 3), 40 * i, dtype=np.uint8)
        arr[8:24, 8:24] = [200, 30 * i, 20]
        Image.fromarray(arr).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": f"{LONG} number {i}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_long_captions_keep_their_tags_in_training_and_in_steering(tiny_sd, tmp_path, monkeypatch):
    from pluralign.methods.ric_image.config import RiCImageConfig
    from pluralign.methods.ric_image.trainer import train_ric_image
    from pluralign.models.diffusion import TextEncoder
    from pluralign.policies import load_policy
    from pluralign.preferences.tags import TagTemplate
    from pluralign.preferences.weights import Preference

    tok = _clip_tokenizer()
    assert len(tok(LONG)["input_ids"]) > 150  # the caption alone is twice the window
    seen: list[str] = []
    encode = TextEncoder.encode
    monkeypatch.setattr(TextEncoder, "encode", lambda self, texts: seen.extend(texts) or encode(self, texts))
    (tmp_path / "unet.json").write_text(json.dumps(TINY_UNET))
    config = RiCImageConfig(
        output_dir=str(tmp_path / "m"), unet_config=str(tmp_path / "unet.json"), text_encoder=str(tiny_sd / "flat"),
        vae="patch:2", resolution=32, dataset=str(_long_caption_images(tmp_path / "data")),
        objective=["compressibility=image:compressibility", "colourfulness=image:colourfulness"],
        caption_dropout=0.0, per_device_train_batch_size=4, max_steps=1, save_steps=1, num_inference_steps=2,
    )
    out = train_ric_image(config, progress=None)
    z = np.asarray(json.loads((out / "rewards.json").read_text())["z"])
    template = TagTemplate(response_marker=None)
    assert len(seen) == 4 and len({template.render(NAMES, row) for row in z}) > 1
    for text in seen:  # training: each caption cut so that its own image's tags are read whole
        caption_kept = text.split(" <compressibility>")[0]
        assert LONG.startswith(caption_kept) and len(caption_kept) > 40  # the caption is cut, not dropped
        assert any(_tags_survive(tok, text, template.render(NAMES, row)) for row in z), text
        assert 70 <= len(tok(text)["input_ids"]) <= 77  # and keeps all the room the tags leave

    policy = load_policy(out)
    for weights in ([1.0, 0.0], [0.2, 0.8]):  # steering: the same cut
        text = policy.tagged_prompt(LONG, dict(zip(NAMES, weights)))
        tags = template.render(NAMES, policy.desired_rewards(Preference(tuple(NAMES), tuple(weights))))
        assert _tags_survive(tok, text, tags), text
    assert policy.tagged_prompt("a red house", None).startswith("a red house <compressibility> ")  # short: as is


def test_word_encoder_and_minilm_leave_room_for_the_tags_too():
    from pluralign.models.diffusion import TextEncoder
    from pluralign.models.word_encoder import WordEncoder

    words = WordEncoder.new(["a b c d e f g h i j"], dim=16, max_length=8)
    assert words.fit_caption("a b c d e f g h i j", " <x> 1") == "a b c d e"  # 8 = start + 5 words + 2 tag words
    assert words.fit_caption("a b", " <x> 1") == "a b"
    minilm = TextEncoder("builtin:all-minilm-l6-v2", max_length=16)
    kept = minilm.fit_caption(LONG, " <compressibility> 1.5")
    ids = minilm.tokenizer(kept + " <compressibility> 1.5")["input_ids"]
    tags = minilm.tokenizer(" <compressibility> 1.5", add_special_tokens=False)["input_ids"]
    assert LONG.startswith(kept) and 14 <= len(ids) <= 16 and ids[-1 - len(tags) : -1] == tags  # [CLS] ... [SEP]


# ---------------------------------------------------------------- 7. no attention mask for SD's CLIP; DDIM


def test_stable_diffusion_clip_gets_no_attention_mask(tiny_sd):
    import torch
    from transformers import CLIPTextModel

    from pluralign.models.diffusion import TextEncoder

    encoder = TextEncoder("", base=str(tiny_sd))  # SD layout: text_encoder/ + tokenizer/
    assert encoder.max_length == 77
    got = encoder.encode(["a red circle"])
    model = CLIPTextModel.from_pretrained(tiny_sd / "text_encoder").eval()
    tok = encoder.tokenizer(["a red circle"], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        unmasked = model(input_ids=tok["input_ids"]).last_hidden_state
        masked = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    torch.testing.assert_close(got, unmasked)  # diffusers' StableDiffusionPipeline.encode_prompt: no mask
    assert not torch.allclose(masked, unmasked, atol=1e-4)  # (the padding states differ with a mask)
    # a BERT-style sentence encoder keeps its mask, as it was pretrained
    assert TextEncoder("builtin:all-minilm-l6-v2", max_length=16).use_attention_mask


def _sd_scheduler_folder(root):
    folder = root / "sd_scheduler" / "scheduler"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "clip_sample": False,
    }))
    return folder.parent


def test_sampling_ddim_keeps_set_alpha_to_one_false(tiny_sd, tmp_path, monkeypatch):
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

    from pluralign.models.diffusion import PatchCodec, TextEncoder, TextToImage

    used: list = []
    set_timesteps = DDIMScheduler.set_timesteps
    monkeypatch.setattr(DDIMScheduler, "set_timesteps", lambda self, *a, **k: used.append(self) or set_timesteps(self, *a, **k))
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(TINY_UNET)
    encoder = TextEncoder("", base=str(tiny_sd))
    sd = DDPMScheduler.from_pretrained(_sd_scheduler_folder(tmp_path), subfolder="scheduler")  # SD's own config
    scratch = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")  # a from-scratch model's
    for scheduler in (sd, scratch):
        pipe = TextToImage(unet, dict(scheduler.config), encoder, PatchCodec(2), 32)
        images = pipe.sample(["a red circle"], num_inference_steps=2, guidance_scale=2.0)
        assert images[0].size == (32, 32)
        ddim = used[-1]
        assert ddim.config.set_alpha_to_one is False
        assert float(ddim.final_alpha_cumprod) == pytest.approx(float(ddim.alphas_cumprod[0]))
    assert used[0].config.steps_offset == 1  # the rest of SD's config carries over (diffusers' from_config)

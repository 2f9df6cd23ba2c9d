"""RiC for text-to-image: image objectives, the quantile mapping, tagged captions with dropout, resume, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pluralign.objectives import ObjectiveSet
from pluralign.objectives.image import colourfulness, jpeg_compressibility
from pluralign.preferences.rewards import (
    preference_to_quantiles,
    preference_to_rewards,
    preference_to_rewards_by_quantile,
    quantile_table,
)
from pluralign.preferences.weights import PreferenceError

TOP = 0.9999999
TINY_UNET = {
    "sample_size": 16,
    "in_channels": 12,
    "out_channels": 12,
    "layers_per_block": 1,
    "block_out_channels": [16, 16],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 384,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
OBJECTIVES = ["compressibility=image:compressibility", "colourfulness=image:colourfulness"]


def _img(arr) -> Image.Image:
    return Image.fromarray(np.asarray(arr, dtype=np.uint8))


# ---------------------------------------------------------------- image objectives


def test_compressibility_prefers_flat_images():
    rng = np.random.default_rng(0)
    flat = _img(np.full((32, 32, 3), 120))
    noisy = _img(rng.integers(0, 256, size=(32, 32, 3)))
    assert jpeg_compressibility(flat) > jpeg_compressibility(noisy)  # resized to 512 x 512, as the reference
    noisy_kb, flat_kb = (jpeg_compressibility(im, resolution=None) for im in (noisy, flat))
    assert noisy_kb < -1.0 < flat_kb < 0  # negative KB at quality 95, at the native 32 x 32


def test_colourfulness_grey_is_zero_and_saturated_is_high():
    grey = _img(np.full((32, 32, 3), 128))
    grey_noise = _img(np.repeat(np.random.default_rng(1).integers(0, 256, size=(32, 32, 1)), 3, axis=2))
    red = _img(np.tile([255, 0, 0], (32, 32, 1)))
    assert colourfulness(grey) == pytest.approx(0.0)
    assert colourfulness(grey_noise) == pytest.approx(0.0)  # grey noise: incompressible, not colourful
    # pure red: rg = 255, yb = 127.5, no spread -> 0.3 * hypot(255, 127.5)
    assert colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
    assert jpeg_compressibility(red) > jpeg_compressibility(grey_noise)  # flat + colourful: not mirrors


def test_image_objectives_in_an_objective_set():
    objectives = ObjectiveSet.from_specs(OBJECTIVES)
    images = [_img(np.full((32, 32, 3), v)) for v in (0, 100, 200)] + [_img(np.tile([0, 0, 255], (32, 32, 1)))]
    scores = objectives.score(["a"] * 4, images)
    objectives.fit_stats(scores)
    assert objectives.stats["colourfulness"].max > 0 and objectives.stats["colourfulness"].min == 0
    assert objectives.zscores(scores).shape == (4, 2)


def test_unknown_image_scorer_is_a_config_error():
    from pluralign.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown image scorer"):
        ObjectiveSet.from_specs(["x=image:sharpness"])


def test_clip_objective_with_a_tiny_random_clip(tmp_path):
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from pluralign.models.embeddings import resolve_encoder

    tok = AutoTokenizer.from_pretrained(resolve_encoder(None))
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, eos_token_id=tok.sep_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8,
    )
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    save_file({"layers.0.weight": torch.ones(1, 8), "layers.0.bias": torch.zeros(1)}, str(tmp_path / "head.safetensors"))
    images = [_img(np.full((40, 48, 3), 30)), _img(np.tile([255, 0, 0], (32, 32, 1)))]
    clip = ObjectiveSet.from_specs([{"name": "clip", "type": "image", "scorer": "clip", "model": str(tmp_path / "clip")}])
    prompts = ["a red square", "a dark picture"]
    s = clip.score(prompts, images)["clip"]
    obj = clip["clip"]
    with torch.no_grad():  # CLIPModel's own logits: logit_scale x the cosine of every (image, prompt) pair
        out = obj.model(**tok(prompts, padding=True, return_tensors="pt"), pixel_values=obj.pixel_values(images))
        cosine = out.logits_per_image / obj.model.logit_scale.exp()
    assert s == pytest.approx((100 * cosine.diagonal()).tolist(), abs=1e-4)  # image i scored against prompt i
    swapped = clip.score(prompts[::-1], images)["clip"]
    assert swapped == pytest.approx((100 * cosine.fliplr().diagonal()).tolist(), abs=1e-4)
    assert max(abs(a - b) for a, b in zip(s, swapped)) > 1e-3  # the prompt matters
    aesthetic = ObjectiveSet.from_specs(
        [{"name": "aes", "type": "image", "scorer": "clip", "model": str(tmp_path / "clip"),
          "head": str(tmp_path / "head.safetensors")}]
    )
    obj = aesthetic["aes"]
    got = obj.score(["x", "y"], images)
    with torch.no_grad():
        emb = obj.model.get_image_features(pixel_values=obj.pixel_values(images))
        emb = getattr(emb, "pooler_output", emb)
        want = (emb / emb.norm(dim=-1, keepdim=True)).sum(-1)  # head: all-ones Linear
    assert got == pytest.approx(want.tolist(), abs=1e-5)


# ---------------------------------------------------------------- quantile mapping


def test_quantile_levels_follow_ric_txt2img():
    assert preference_to_quantiles([0.7, 0.3]) == pytest.approx([TOP, 0.6])
    assert preference_to_quantiles([0.2, 0.8]) == pytest.approx([0.4, TOP])
    assert preference_to_quantiles([0.5, 0.5]) == pytest.approx([TOP, TOP])
    assert preference_to_quantiles([1.0, 0.0]) == pytest.approx([TOP, 0.0])
    assert preference_to_quantiles([0.5, 0.3, 0.2]) == pytest.approx([TOP, 0.9, 0.6])
    with pytest.raises(PreferenceError):
        preference_to_quantiles([0.7, -0.3])


def test_quantile_rewards_match_numpy_quantiles():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5000, 2)) * [1.0, 2.0]
    tables = [quantile_table(z[:, 0]), quantile_table(z[:, 1])]
    got = preference_to_rewards_by_quantile([0.3, 0.7], tables)
    assert got[1] == pytest.approx(z[:, 1].max(), abs=1e-3)  # dominant: the 0.9999999-quantile ~ max
    assert got[0] == pytest.approx(np.quantile(z[:, 0], 0.6), abs=0.01)
    lo = preference_to_rewards_by_quantile([1.0, 0.0], tables)
    assert lo[1] == pytest.approx(z[:, 1].min())
    # linf asks for a fraction of the range instead: 0.6 of the way from min to max, not the 0.6-quantile
    linf = preference_to_rewards([0.3, 0.7], z.min(0), z.max(0), "linf")
    assert linf[0] == pytest.approx(z[:, 0].min() + 0.6 * np.ptp(z[:, 0])) and abs(linf[0] - got[0]) > 0.1


# ---------------------------------------------------------------- tags and dropout


def test_captions_carry_tags_and_are_dropped_together():
    from pluralign.methods.ric_image.captions import caption_template, tagged_captions
    from pluralign.methods.ric_image.config import RiCImageConfig
    from pluralign.methods.ric_image.trainer import step_draw

    template = caption_template(RiCImageConfig())
    z = np.array([[0.51, -1.24], [2.0, 0.0]])
    out = tagged_captions(["a red circle", "a blue square"], z, ["rm1", "rm2"], template, [False, True])
    assert out == ["a red circle <rm1> 0.5 <rm2> -1.2", ""]
    drops = np.concatenate([step_draw(0, s, 0, 100, 64, 0.1)[1] for s in range(200)])
    assert 0.08 < drops.mean() < 0.12
    a, b = step_draw(3, 7, 0, 100, 16, 0.1), step_draw(3, 7, 0, 100, 16, 0.1)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()  # the same step draws the same batch (resume)


# ---------------------------------------------------------------- training, resume, generation


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from pluralign.worlds.images.world import write_world_images

    root = tmp_path_factory.mktemp("imgworld")
    data = write_world_images(root / "images", 48, seed=0)
    (root / "unet.json").write_text(json.dumps(TINY_UNET))
    return root, data


def _config(root, data, out, steps, **kw):
    from pluralign.methods.ric_image.config import RiCImageConfig

    values = dict(
        output_dir=str(out), unet_config=str(root / "unet.json"), text_encoder="builtin:all-minilm-l6-v2",
        vae="patch:2", text_max_length=24, resolution=32, dataset=str(data), objective=list(OBJECTIVES),
        learning_rate=1e-3, per_device_train_batch_size=4, max_steps=steps, save_steps=2, logging_steps=100,
        num_inference_steps=2, guidance_scale=2.0,
    )
    values.update(kw)
    return RiCImageConfig(**values)


def _unet_state(path):
    from safetensors.torch import load_file

    return load_file(str(path / "unet" / "diffusion_pytorch_model.safetensors"))


def test_resume_takes_the_same_steps_as_an_uninterrupted_run(world, tmp_path):
    import torch

    from pluralign.methods.ric_image.trainer import train_ric_image
    from pluralign.objectives.scoring import ScoreCache

    root, data = world
    straight = train_ric_image(_config(root, data, tmp_path / "a", 4, use_ema=True, ema_decay=0.9), progress=None)
    logs: list[str] = []
    train_ric_image(_config(root, data, tmp_path / "b", 2, use_ema=True, ema_decay=0.9), progress=None)
    assert ScoreCache(tmp_path / "b" / "score_cache.sqlite").count() == 2 * 48
    resumed = train_ric_image(_config(root, data, tmp_path / "b", 4, use_ema=True, ema_decay=0.9), progress=logs.append)
    assert any("resumed" in m and "step 2" in m for m in logs)
    assert not any("scored" in m for m in logs)  # scores come from the cache
    a, b = _unet_state(straight), _unet_state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_train_then_generate_pil_images(world, tmp_path):
    from pluralign.cli import main
    from pluralign.methods.ric_image.trainer import train_ric_image
    from pluralign.models.manifest import Manifest
    from pluralign.policies import load_policy

    root, data = world
    out = train_ric_image(_config(root, data, tmp_path / "m", 2), progress=None)
    manifest = Manifest.load(out)
    assert manifest.method == "ric-image" and manifest.mapping == "quantile"
    assert manifest.objectives == ["compressibility", "colourfulness"]
    assert len(manifest.extra["quantile_tables"]["colourfulness"]) == 1001
    policy = load_policy(out)
    tagged = policy.tagged_prompt("a red circle", {"compressibility": 1.0, "colourfulness": 0.0})
    assert tagged.startswith("a red circle <compressibility> ") and "<colourfulness> " in tagged
    images = policy.generate(["a red circle", "a blue square"], preference={"compressibility": 0.7, "colourfulness": 0.3})
    assert len(images) == 2 and all(isinstance(im, Image.Image) and im.size == (32, 32) for im in images)
    png = tmp_path / "img.png"
    rc = main(["generate", "--model", str(out), "--preference", "compressibility=0.7,colourfulness=0.3",
               "a red circle", "--out", str(png), "--num_inference_steps", "2"])
    assert rc == 0 and Image.open(png).size == (32, 32)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"caption": "a red circle"}\n{"caption": "a blue square"}\n')
    rc = main(["evaluate", "--model", str(out), "--baseline", str(out), "--dataset", str(prompts), "--prompt_column",
               "caption", "--out", str(tmp_path / "ev"), "--num_inference_steps", "2", "--grid_points", "2"])
    front = json.loads((tmp_path / "ev" / "front.json").read_text())
    assert rc == 0 and [f["method"] for f in front["fronts"]] == ["sft", "ric"]
    ric = front["fronts"][1]
    assert [p["preference"] for p in ric["points"]] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    # range: each objective's span over the grid / the 5th-95th percentile spread of the training images' scores
    achieved = np.array([p["scores"] for p in ric["points"]])
    spread = [manifest.stats[n]["quantiles"]["0.95"] - manifest.stats[n]["quantiles"]["0.05"] for n in manifest.objectives]
    assert ric["range"] == pytest.approx([np.ptp(achieved[:, i]) / spread[i] for i in range(2)])
    assert front["fronts"][0]["range"] == pytest.approx([0.0, 0.0])  # the baseline ignores the preference
    # every evaluated image is on disk, named by its point in the RiC front: scores recomputable from pixels
    for g, point in enumerate(ric["points"]):
        imgs = [Image.open(tmp_path / "ev" / "samples" / f"p{g}_{k}.png") for k in range(2)]
        assert point["scores"][1] == pytest.approx(np.mean([colourfulness(im) for im in imgs]))
    assert "Samples per preference" in (tmp_path / "ev" / "report.html").read_text()
    assert (tmp_path / "ev" / "pareto.png").is_file()


def test_image_world_steers_each_objective_towards_its_own_end(world, tmp_path):
    """The README's claim, at test size: a RiC model trained on the image world (its 48 images, at 16 px on
    2x2 patches, with the word encoder, 200 steps) gives more compressible images at w = (1, 0) and more
    colourful ones at w = (0, 1), from the same starting noise per prompt."""
    from pluralign.methods.ric_image.trainer import train_ric_image
    from pluralign.policies import load_policy
    from pluralign.worlds.images.world import OBJECTIVES as WORLD_OBJECTIVES, eval_captions

    root, data = world
    unet = dict(TINY_UNET, sample_size=8, cross_attention_dim=16, addition_embed_type="text",
                addition_embed_type_num_heads=2)
    (root / "unet_steer.json").write_text(json.dumps(unet))
    config = _config(
        root, data, tmp_path / "m", 200, unet_config=str(root / "unet_steer.json"), text_encoder="word",
        tag_format="<{name}> {value:.0f}", objective=list(WORLD_OBJECTIVES), resolution=16,
        prediction_type="v_prediction", learning_rate=5e-3, lr_warmup_steps=10, per_device_train_batch_size=16,
        save_steps=1000, use_ema=True, ema_decay=0.9, seed=0,
    )
    policy = load_policy(train_ric_image(config, progress=None))
    objectives = ObjectiveSet.from_specs(WORLD_OBJECTIVES)
    prompts = eval_captions(8)
    means = {}
    for w in ((1.0, 0.0), (0.0, 1.0)):
        images = policy.generate(prompts, preference=dict(zip(objectives.names, w)), num_inference_steps=10,
                                 guidance_scale=7.5, seed=0)
        means[w] = {n: np.mean(v) for n, v in objectives.score(prompts, images).items()}
    assert means[(1.0, 0.0)]["compressibility"] > means[(0.0, 1.0)]["compressibility"]
    assert means[(0.0, 1.0)]["colourfulness"] > means[(1.0, 0.0)]["colourfulness"]


def test_config_errors_are_one_line(world, tmp_path, capsys):
    from pluralign.cli import main

    root, data = world
    rc = main(["train", "ric-image", "--output_dir", str(tmp_path / "x"), "--dataset", str(data),
               "--unet_config", str(root / "unet.json"), "--text_encoder", "builtin:all-minilm-l6-v2", "--vae", "patch:2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "objective" in err[0]
    rc = main(["train", "ric-image", "--output_dir", str(tmp_path / "x"), "--dataset", str(data), "--objective",
               "c=image:compressibility", "--unet_config", str(root / "unet.json"), "--text_encoder",
               "builtin:all-minilm-l6-v2", "--vae", "patch:2", "--caption_column", "caption"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--caption_column" in err[0]


def test_image_world_objectives_conflict_without_mirroring(world):
    from pluralign.worlds.images.world import render

    root, data = world
    rows = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    images = [Image.open(data / r["file_name"]) for r in rows]
    comp = np.array([jpeg_compressibility(im, resolution=32) for im in images])  # the world's resolution
    col = np.array([colourfulness(im) for im in images])
    assert np.corrcoef(comp, col)[0, 1] < -0.5  # conflict across the data
    assert all(r["text"].endswith("background") for r in rows)
    rng = np.random.default_rng(0)
    flat_vivid = Image.fromarray((render("red", "circle", "plain", 1.0, 0.0, rng) * 255).astype(np.uint8))
    assert colourfulness(flat_vivid) > np.median(col) and jpeg_compressibility(flat_vivid, resolution=32) > np.median(comp)


def test_word_encoder_trains_with_the_unet_grows_by_the_tags_and_resumes(world, tmp_path):
    import torch

    from pluralign.methods.ric_image.trainer import train_ric_image
    from pluralign.models.word_encoder import WordEncoder
    from pluralign.policies import load_policy

    root, data = world
    unet = dict(TINY_UNET, cross_attention_dim=16, addition_embed_type="text", addition_embed_type_num_heads=2)
    (root / "unet_word.json").write_text(json.dumps(unet))
    kw = dict(text_encoder="word", tag_format="<{name}> {value:.0f}")
    base = train_ric_image(
        _config(root, data, tmp_path / "base", 2, unet_config=str(root / "unet_word.json"), conditioning=False, **kw),
        progress=None,
    )
    before = WordEncoder.load(base / "word_encoder")
    assert "background" in before.vocab and "<colourfulness>" not in before.vocab  # caption words only
    ric = dict(kw, unet_config=None, model_name_or_path=str(base))
    straight = train_ric_image(_config(root, data, tmp_path / "a", 4, **ric), progress=None)
    train_ric_image(_config(root, data, tmp_path / "b", 2, **ric), progress=None)
    resumed = train_ric_image(_config(root, data, tmp_path / "b", 4, **ric), progress=None)
    a, b = WordEncoder.load(straight / "word_encoder"), WordEncoder.load(resumed / "word_encoder")
    assert a.vocab == b.vocab and "<colourfulness>" in a.vocab and "<compressibility>" in a.vocab  # grown by the tags
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(v, b.model.state_dict()[k], rtol=1e-4, atol=1e-5)
    row = a.index["background"]
    assert not torch.allclose(a.model.embed.weight[row], before.model.embed.weight[row])  # trained with the UNet
    images = load_policy(straight).generate(["a red circle"], preference={"compressibility": 1.0, "colourfulness": 0.0},
                                            num_inference_steps=2)
    assert images[0].size == (32, 32)

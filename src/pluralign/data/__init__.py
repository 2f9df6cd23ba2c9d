"""Datasets: loading (hub id or local file), schema checks, scoring with a resumable cache, the demo world."""

from pluralign.data.loading import load_any, prompt_text, to_samples
from pluralign.data.scoring import ScoreCache, score_samples

__all__ = ["ScoreCache", "load_any", "prompt_text", "score_samples", "to_samples"]

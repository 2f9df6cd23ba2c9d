"""Datasets: loading (hub id or local file), schema checks, pairs, dialogues, JSONL; scoring with a
resumable cache lives with the objectives (:mod:`pluralign.objectives.scoring`)."""

from pluralign.data.loading import load_any, prompt_text, to_samples

__all__ = ["load_any", "prompt_text", "to_samples"]

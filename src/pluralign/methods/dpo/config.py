"""Configuration of ``pluralign train dpo``: the shared DPO-stage options, nothing of its own."""

from __future__ import annotations

from dataclasses import dataclass

from pluralign.training.dpo_stage import DimensionDPOConfig


@dataclass
class DPOConfig(DimensionDPOConfig):
    """One DPO model on every dimension's pairs merged (the single-model baseline of SPO and MODPO)."""

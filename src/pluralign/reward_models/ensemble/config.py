"""Options of ``pluralign train reward-model --type ensemble``: the members and the pairs their statistics
are fitted on."""

from __future__ import annotations

from dataclasses import dataclass, field

from pluralign.errors import ConfigError


@dataclass
class EnsembleConfig:
    """Members' scores are z-scored with statistics fitted on the training split of ``dataset`` (the pairs
    left after holding out ``eval_fraction`` by pair id with ``seed``: give the members' own split, so the
    held-out pairs stay unseen by every member), then averaged."""

    members: list[str] = field(default_factory=list, metadata={"help": "trained reward-model dirs (repeatable)"})
    dataset: str | None = field(default=None, metadata={"help": "pairs: hub id or local jsonl/json/parquet/csv"})
    output_dir: str | None = field(default=None, metadata={"help": "where the ensemble is written"})
    objective_name: str = field(default="reward", metadata={"help": "the name the score goes by (pluralign.json)"})
    prompt_column: str = "prompt"
    eval_fraction: float = field(default=0.1, metadata={"help": "share of the pairs held out (by pair id)"})
    seed: int = field(default=0, metadata={"help": "seed of the held-out split"})
    skip_invalid_pairs: bool = field(
        default=False, metadata={"help": "drop pairs with an empty response or identical responses (else an error)"}
    )
    max_pairs: int | None = field(default=None, metadata={"help": "use at most this many pairs"})

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise ConfigError("--output_dir is required: the folder that will hold the ensemble")
        if len(self.members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 --members (trained reward-model dirs), got {len(self.members)}")
        if not 0.0 <= self.eval_fraction < 0.9:
            raise ConfigError(f"--eval_fraction must be in [0, 0.9), got {self.eval_fraction}")

"""DPO with a per-pair margin, the loss SPO and MODPO share: -log sigmoid(beta * delta - margin).

TRL's DPOTrainer scores a pair by ``delta = [log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]``,
with the reference log-probabilities precomputed once per pair (``precompute_ref_log_probs``). Since

    beta * delta - m = beta * ([log pi(y_w) - (log ref(y_w) + m / beta)] - [log pi(y_l) - log ref(y_l)]),

adding ``m / beta`` to the precomputed reference log-probability of the chosen response gives exactly the
margin loss while TRL's own loss code runs unchanged. The dataset carries the margin in a ``margin``
column; without that column the trainer is TRL's DPO. Logged ``rewards/*`` then include the margin. A
dataset may also bring the reference log-probabilities themselves (``ref_chosen_logps`` and
``ref_rejected_logps``, as :func:`~pluralign.training.pair_logps.pair_logps` computes them), and TRL's
reference pass is then skipped.
"""

from __future__ import annotations

from typing import Any

from trl import DPOTrainer

from pluralign.errors import ConfigError

MARGIN_COLUMN = "margin"
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")  # TRL's names for the precomputed reference log-probs
# losses that see the pair only through beta * delta, so the shift above is exactly "minus the margin"
MARGIN_LOSS_TYPES = ("sigmoid", "hinge", "robust", "exo_pair", "discopop")


class MarginDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer whose train/eval datasets may hold a per-pair ``margin`` column."""

    def __init__(
        self,
        model: Any,
        ref_model: Any = None,
        args: Any = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        columns = getattr(train_dataset, "column_names", None) or []
        if MARGIN_COLUMN in columns or set(REF_COLUMNS) <= set(columns):
            check_margin_args(args)
        super().__init__(model, ref_model, args, data_collator, train_dataset, **kwargs)

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        """TRL's precomputation (skipped when the dataset brings its own ``ref_*_logps`` columns, e.g. SPO's
        reference pass already made for its margin), then the margin folded into the chosen one."""
        if not set(REF_COLUMNS) <= set(dataset.column_names):
            dataset = super()._precompute_ref_logps(dataset, name, batch_size)
        if MARGIN_COLUMN not in dataset.column_names:
            return dataset
        beta = self.beta

        def fold(batch: dict[str, list]) -> dict[str, list]:
            return {"ref_chosen_logps": [r + m / beta for r, m in zip(batch["ref_chosen_logps"], batch[MARGIN_COLUMN])]}

        return dataset.map(fold, batched=True, desc=f"Adding margins to {name} reference log probs")


def check_margin_args(args: Any) -> None:
    """A margin needs precomputed reference log-probs, the reverse-KL reward and a loss of beta * delta."""
    if args is None or not args.precompute_ref_log_probs:
        raise ConfigError("a per-pair margin needs precompute_ref_log_probs: true; remove the flag that disables it")
    bad = [t for t in args.loss_type if t not in MARGIN_LOSS_TYPES]
    if bad:
        raise ConfigError(f"loss_type {bad[0]!r} cannot take a margin; use one of {', '.join(MARGIN_LOSS_TYPES)}")
    if args.f_divergence_type != "reverse_kl":
        raise ConfigError("a per-pair margin needs f_divergence_type: reverse_kl (the DPO reward)")

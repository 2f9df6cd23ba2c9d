"""NPDPOTrainer: TRL's DPOTrainer with the policy conditioned on each row's context latent z.

Only what NP-DPO changes is overridden: the collator adds the context features, the loss runs the policy
under FiLM(z) with z = context_encoder(context) (so the encoder learns through the DPO loss), and the
reference pass runs unconditioned. TRL's loss sums log-probabilities over completion tokens only
(``completion_mask``), never over the prompt or padding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from trl import DPOTrainer

from pluralign.methods.npbtl.modules import ContextEncoder
from pluralign.methods.npdpo.data import CONTEXT_COLUMN, ContextPreferenceCollator
from pluralign.methods.npdpo.film import FiLM

NP_KEYS = ("np_context", "np_context_mask")


class NPDPOTrainer(DPOTrainer):
    def __init__(
        self,
        *args: Any,
        context_encoder: ContextEncoder,
        film: FiLM,
        context_table: torch.Tensor,
        processing_class=None,
        **kwargs: Any,
    ) -> None:
        pad_id = (
            processing_class.pad_token_id
            if processing_class.pad_token_id is not None
            else processing_class.eos_token_id
        )
        args_ = kwargs.get("args")
        kwargs.setdefault(
            "data_collator",
            ContextPreferenceCollator(
                pad_token_id=pad_id, max_length=getattr(args_, "max_length", None), table=context_table
            ),
        )
        # set before TRL's __init__, which may already run the (unconditioned) reference pass
        self.context_encoder = context_encoder
        self.film = film
        super().__init__(*args, processing_class=processing_class, **kwargs)
        # Registered on the policy so Trainer's optimiser trains them with the LM (or its LoRA adapters)
        self.model.add_module("npdpo_context_encoder", context_encoder)
        self.model.add_module("npdpo_film", film)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """TRL's optimiser; the NP modules get their own learning rate when ``np_learning_rate`` is set."""
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        lr = getattr(self.args, "np_learning_rate", None)
        if lr is None:
            return optimizer
        np_params = [p for m in (self.context_encoder, self.film) for p in m.parameters() if p.requires_grad]
        np_ids = {id(p) for p in np_params}
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in np_ids]
        optimizer.add_param_group({"params": np_params, "lr": lr, "weight_decay": 0.0})
        return optimizer

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if CONTEXT_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, CONTEXT_COLUMN]

    def latent(self, inputs: dict[str, Any]) -> torch.Tensor:
        device = next(self.context_encoder.parameters()).device
        return self.context_encoder(inputs["np_context"].to(device), inputs["np_context_mask"].to(device))

    def _compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool):
        z = self.latent(inputs)
        inputs = {k: v for k, v in inputs.items() if k not in NP_KEYS}
        # the batch is [chosen rows; rejected rows]: both halves see their row's z
        with self.film.condition(torch.cat([z, z], dim=0)):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model: nn.Module, inputs: dict[str, Any]):
        inputs = {k: v for k, v in inputs.items() if k not in NP_KEYS}
        with self.film.condition(None):
            return super().compute_ref_log_probs(model, inputs)

"""Hugging Face sequence-classification reward models as objectives.

Input conventions differ between reward models (METHODS.md §1), so each is configurable:

- ``input_format="pair"``: the tokenizer's text pair ``(prompt, response)``;
- ``input_format="reversed_pair"``: the text pair ``(response, prompt)`` (RiC's summary reward models);
- ``input_format="response"``: the response alone;
- ``input_format="concat"``: ``prompt + separator + response`` as one text (no separator: one space unless
  the prompt ends in whitespace, the join rule training uses);
- ``input_format="template"``: ``template.format(prompt=..., response=..., bos=..., eos=...)``;
- ``input_format="summary_bos_post"``: ``response + " " + bos + " " + prompt`` (RiC's summary convention).

Over ``max_length`` tokens the oldest prompt tokens are dropped and the response kept
(:mod:`pluralign.models.truncation`).

``chat_template=True`` renders the dialogue with the model's chat template (a plain or HH-style text prompt
becomes chat messages first: :func:`pluralign.models.truncation.render_pair`), for reward models built on
chat models.

``logit_index`` picks the class logit; ``activation`` optionally maps it (``sigmoid``, ``softmax``).

``pooling="mean"`` makes an encoder's head read the attention-masked mean of its last hidden state
instead of its ``[CLS]`` pooler (:mod:`pluralign.models.encoder_pooling`): how pluralign's classifier
reward models on sentence encoders are trained and scored (their ``pluralign.json`` says so).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pluralign.errors import ConfigError
from pluralign.models.loading import check_model_source, load_error
from pluralign.models.truncation import INPUT_FORMATS, PairFormat, encode_pairs
from pluralign.objectives.base import Objective

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class HFRewardModel(Objective):
    def __init__(
        self,
        name: str,
        model: str,
        input_format: str = "pair",
        template: str | None = None,
        separator: str | None = None,
        append_eos: bool = False,
        logit_index: int = 0,
        activation: str = "none",
        max_length: int = 512,
        batch_size: int = 8,
        dtype: str = "float32",
        device: str | None = None,
        trust_remote_code: bool = False,
        chat_template: bool = False,
        pooling: str = "model",
    ) -> None:
        if input_format not in INPUT_FORMATS:
            raise ConfigError(f"objective {name!r}: input_format {input_format!r} is not one of {INPUT_FORMATS}")
        if input_format == "template" and not template:
            raise ConfigError(
                f"objective {name!r}: input_format 'template' needs a template with {{prompt}} and {{response}}"
            )
        if dtype not in DTYPES:
            raise ConfigError(f"objective {name!r}: dtype {dtype!r} is not one of {list(DTYPES)}")
        if activation not in ("none", "sigmoid", "softmax"):
            raise ConfigError(f"objective {name!r}: activation {activation!r} is not none, sigmoid or softmax")
        if pooling not in ("model", "mean"):
            raise ConfigError(f"objective {name!r}: pooling {pooling!r} is not model (the model's own) or mean")
        self.name = name
        self.model_name = check_model_source(model, what=f"reward model for objective {name!r}")
        self.input_format = input_format
        self.template = template
        self.separator = separator
        self.append_eos = append_eos
        self.logit_index = logit_index
        self.activation = activation
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.trust_remote_code = trust_remote_code
        self.chat_template = bool(chat_template)
        self.pooling = pooling
        self._model = None
        self._tokenizer = None

    @property
    def identity(self) -> str:
        return (
            f"hf:{self.model_name}:{self.input_format}:{self.template}:{self.separator!r}:{self.append_eos}:"
            f"{self.logit_index}:{self.activation}:{self.max_length}:{self.dtype}:keep-end"
            + (":chat" if self.chat_template else "")
            + (":mean" if self.pooling == "mean" else "")
        )

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name, trust_remote_code=self.trust_remote_code)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                self.model_name, dtype=DTYPES[self.dtype], trust_remote_code=self.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise load_error(self.model_name, f"reward model for objective {self.name!r}", exc) from exc
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
            self._model.config.pad_token_id = self._tokenizer.pad_token_id
        if self.pooling == "mean":
            from pluralign.models.encoder_pooling import use_mean_pooling

            use_mean_pooling(self._model)
        self._model.to(self.device).eval()

    def _format(self) -> PairFormat:
        suffix = (self._tokenizer.eos_token or "") if self.append_eos else ""
        chat = self.chat_template and bool(getattr(self._tokenizer, "chat_template", None))
        # a rendered chat template holds its own special tokens
        return PairFormat(self.input_format, self.template, self.separator, suffix, add_special_tokens=not chat, chat=chat)

    def _texts(self, prompts: Sequence[str], responses: Sequence[str]) -> dict:
        return encode_pairs(
            self._tokenizer, list(prompts), list(responses), self.max_length, self._format(), return_tensors="pt"
        )

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        self._load()
        enc = {k: v.to(self.device) for k, v in self._texts(prompts, responses).items()}
        logits = self._model(**enc).logits.float()
        if self.activation == "softmax":
            logits = logits.softmax(-1)
        values = logits[:, self.logit_index]
        if self.activation == "sigmoid":
            values = values.sigmoid()
        return values.cpu().tolist()

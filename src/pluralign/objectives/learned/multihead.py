"""The multi-head classification reward model (MOSLIM): a Hugging Face backbone and one linear head per objective;
the trained model as a scorer (:class:`MultiHeadRewardScorer`, what ``load_reward_model`` returns) and one
of its heads as an objective (:class:`MultiHeadObjective`, ``type: multihead`` in objective specs:
``helpful=multihead:/path/to/rm``, or ``{"name": ..., "type": "multihead", "model": DIR, "head": ..., "reduce": ...}``).

Head i classifies a (prompt, response) pair into K_i intensity levels (K_i may differ per objective).
The backbone is any encoder (pooled by attention-masked mean, or its [CLS] token) or causal LM (pooled
at the last real token). Saved as ``backbone/`` (save_pretrained, safetensors) + ``heads.safetensors`` +
``multihead.json`` (objectives, classes per head, pooling, input format, bin edges, class statistics).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pluralign.errors import ConfigError, ModelNotFoundError
from pluralign.models.encoder_pooling import masked_mean
from pluralign.models.manifest import Manifest
from pluralign.objectives.base import Objective

HEADS_FILE = "heads.safetensors"
CONFIG_FILE = "multihead.json"
BACKBONE_DIR = "backbone"
POOLINGS = ("auto", "mean", "cls", "last")
INPUT_FORMATS = ("pair", "response", "concat")


@dataclass
class MultiHeadSpec:
    """Everything needed to rebuild the heads and feed the backbone, saved as ``multihead.json``.

    ``bin_edges[name]`` holds the inner class boundaries for objectives trained from binned scores (a
    score ``s`` falls in class ``searchsorted(edges, s, side="right")``); ``class_stats[name][c]`` holds the
    mean/std of the head's probability of class ``c`` on the held-out split (MOSLIM's "head" statistics).
    """

    objectives: list[str]
    num_classes: list[int]
    pooling: str = "mean"
    input_format: str = "pair"
    max_length: int = 256
    bin_edges: dict[str, list[float]] = field(default_factory=dict)
    class_stats: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    label_sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.objectives) != len(self.num_classes):
            raise ConfigError(
                f"num_classes has {len(self.num_classes)} values for {len(self.objectives)} objectives; give one per objective"
            )
        bad = [k for k in self.num_classes if int(k) < 2]
        if bad:
            raise ConfigError(
                f"num_classes must be >= 2 for every head (got {bad[0]}); a head needs two classes or more"
            )
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"input_format {self.input_format!r} is not one of {INPUT_FORMATS}")

    def head_index(self, name: str) -> int:
        if name not in self.objectives:
            raise ConfigError(f"the reward model has no head {name!r}; its heads are {self.objectives}")
        return self.objectives.index(name)


def resolve_pooling(pooling: str, backbone_config: Any) -> str:
    """``auto`` pools causal LMs at the last token and encoders by masked mean."""
    if pooling != "auto":
        return pooling
    archs = " ".join(getattr(backbone_config, "architectures", None) or [])
    causal = getattr(backbone_config, "is_decoder", False) or "CausalLM" in archs or "LMHead" in archs
    return "last" if causal else "mean"


class MultiHeadRewardModel(nn.Module):
    """Backbone + one classification head per objective; ``forward`` returns a list of logits tensors."""

    def __init__(self, backbone: nn.Module, spec: MultiHeadSpec, dropout: float = 0.1) -> None:
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        hidden = backbone.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList([nn.Linear(hidden, int(k)) for k in spec.num_classes])

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        if self.spec.pooling == "last":
            # works for left and right padding: the last position whose mask is 1
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            last = (attention_mask * positions).argmax(dim=1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return masked_mean(hidden, attention_mask)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The pooled backbone output every head reads, (B, hidden)."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]
        return self.pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> list[torch.Tensor]:
        pooled = self.dropout(self.features(input_ids, attention_mask, **kwargs))
        return [head(pooled) for head in self.heads]

    def save(self, model_dir: str | Path, tokenizer: Any) -> None:
        """Write backbone (safetensors), tokenizer, heads (safetensors) and ``multihead.json``."""
        from safetensors.torch import save_file

        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(model_dir / BACKBONE_DIR)
        tokenizer.save_pretrained(model_dir / BACKBONE_DIR)
        heads = {k: v.detach().contiguous().cpu() for k, v in self.heads.state_dict().items()}
        save_file(heads, str(model_dir / HEADS_FILE))
        (model_dir / CONFIG_FILE).write_text(json.dumps(asdict(self.spec), indent=2))


def load_backbone(
    name: str, from_scratch: bool = False, config_overrides: dict | None = None, trust_remote_code: bool = False
) -> tuple[nn.Module, Any]:
    """Load (or, with ``from_scratch``, build randomly initialised from its config) a backbone and its tokenizer.

    Causal LMs are loaded as their base model (``AutoModel``) so the pooled hidden state feeds the heads.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from pluralign.models.loading import check_model_source, load_error

    source = check_model_source(name, what="reward-model backbone")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        for key, value in (config_overrides or {}).items():
            if not hasattr(config, key):
                raise ConfigError(f"backbone_config_overrides: {type(config).__name__} has no field {key!r}")
            setattr(config, key, value)
        if from_scratch:
            backbone = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
        else:
            if config_overrides:
                raise ConfigError(
                    "backbone_config_overrides needs from_scratch=true (pretrained weights fix the shapes)"
                )
            backbone = AutoModel.from_pretrained(source, config=config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise load_error(name, "reward-model backbone", exc) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return backbone, tokenizer


def load_multihead(model_dir: str | Path, device: str = "cpu") -> tuple[MultiHeadRewardModel, Any]:
    """Load a saved multi-head model (safetensors only) and its tokenizer, in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise ModelNotFoundError(
            f"{str(model_dir)!r} has no {CONFIG_FILE}; train one with `pluralign train reward-model --type multihead`"
        )
    spec = MultiHeadSpec(**json.loads((model_dir / CONFIG_FILE).read_text()))
    backbone = AutoModel.from_pretrained(model_dir / BACKBONE_DIR)
    tokenizer = AutoTokenizer.from_pretrained(model_dir / BACKBONE_DIR)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = MultiHeadRewardModel(backbone, spec)
    model.heads.load_state_dict(load_file(str(model_dir / HEADS_FILE)))
    return model.to(device).eval(), tokenizer


def encode(
    tokenizer: Any, spec: MultiHeadSpec, prompts: Sequence[str], responses: Sequence[str], padding: bool | str = True
) -> dict[str, Any]:
    """Tokenize pairs the way the model was trained (``spec.input_format``), keeping the response and the
    latest prompt tokens within ``spec.max_length`` (:mod:`pluralign.models.truncation`)."""
    from pluralign.models.truncation import PairFormat, encode_pairs

    return encode_pairs(
        tokenizer,
        list(prompts),
        list(responses),
        spec.max_length,
        PairFormat(spec.input_format),
        return_tensors="pt" if padding else None,
    )


@torch.no_grad()
def predict_probabilities(
    model: MultiHeadRewardModel, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 64
) -> list[np.ndarray]:
    """Per head, an (N, K_i) array of class probabilities."""
    model.eval()
    device = next(model.parameters()).device
    parts: list[list[np.ndarray]] = [[] for _ in model.heads]
    for start in range(0, len(prompts), batch_size):
        enc = encode(tokenizer, model.spec, prompts[start : start + batch_size], responses[start : start + batch_size])
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device))
        for i, lg in enumerate(logits):
            parts[i].append(lg.float().softmax(-1).cpu().numpy())
    return [np.concatenate(p) if p else np.zeros((0, k)) for p, k in zip(parts, model.spec.num_classes)]


REDUCTIONS = ("expected", "normalized", "class_prob", "argmax")


class MultiHeadRewardScorer:
    """Scores (prompt, response) pairs with every head of a multi-head classification reward model."""

    def __init__(self, model_dir: str | Path, device: str | None = None, batch_size: int = 64) -> None:
        import torch

        self.model_dir = Path(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.tokenizer = load_multihead(self.model_dir, self.device)
        self.batch_size = batch_size

    @property
    def spec(self) -> MultiHeadSpec:
        return self.model.spec

    @property
    def objectives(self) -> list[str]:
        return list(self.spec.objectives)

    def probabilities(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, np.ndarray]:
        """``{head name: (N, K_i) class probabilities}``."""
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        probs = predict_probabilities(self.model, self.tokenizer, list(prompts), list(responses), self.batch_size)
        return dict(zip(self.spec.objectives, probs))

    def head_scores(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        reduce: str = "normalized",
        target_class: int | None = None,
    ) -> dict[str, np.ndarray]:
        """One float per pair and head: ``expected`` class index, ``normalized`` (expected / (K_i - 1), in
        [0, 1]), ``argmax`` class, or ``class_prob`` (the probability of ``target_class``)."""
        if reduce not in REDUCTIONS:
            raise ConfigError(f"reduce {reduce!r} is not one of {REDUCTIONS}")
        out = {}
        for name, p in self.probabilities(prompts, responses).items():
            k = p.shape[1]
            if reduce == "class_prob":
                if target_class is None or not 0 <= target_class < k:
                    raise ConfigError(f"reduce='class_prob' needs target_class in 0..{k - 1} for head {name!r}")
                out[name] = p[:, target_class]
            elif reduce == "argmax":
                out[name] = p.argmax(1).astype(np.float64)
            else:
                expected = p @ np.arange(k, dtype=np.float64)
                out[name] = expected / (k - 1) if reduce == "normalized" else expected
        return out

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], context: Any = None, head: str | None = None
    ) -> list[float]:
        """The contract's scalar: a head's normalised expected intensity, or the mean over heads."""
        if context is not None:
            raise ConfigError("a multi-head reward model is not conditioned on context; pass context=None")
        scores = self.head_scores(prompts, responses, reduce="normalized")
        if head is not None:
            self.spec.head_index(head)
            return scores[head].tolist()
        return np.mean(np.stack(list(scores.values()), axis=1), axis=1).tolist()


def load(model_dir: Path, manifest: Manifest, **kwargs: Any) -> MultiHeadRewardScorer:
    """``pluralign.load_reward_model`` hook."""
    return MultiHeadRewardScorer(model_dir, **kwargs)


class MultiHeadObjective(Objective):
    """Scores with head ``head`` (default: the objective's name), reduced to a float by ``reduce``."""

    def __init__(
        self,
        name: str,
        model: str,
        head: str | None = None,
        reduce: str = "expected",
        target_class: int | None = None,
        batch_size: int = 64,
    ) -> None:
        if reduce not in REDUCTIONS:
            raise ConfigError(f"objective {name!r}: reduce {reduce!r} is not one of {REDUCTIONS}")
        if not (Path(model) / CONFIG_FILE).is_file():
            raise ModelNotFoundError(
                f"objective {name!r}: {model!r} is not a multi-head reward model (no {CONFIG_FILE}); "
                "train one with `pluralign train reward-model --type multihead`"
            )
        self.name = name
        self.model_dir = str(Path(model).resolve())
        self.head = head or name
        self.reduce = reduce
        self.target_class = target_class
        self.batch_size = batch_size

    @cached_property
    def scorer(self) -> MultiHeadRewardScorer:
        scorer = MultiHeadRewardScorer(self.model_dir, batch_size=self.batch_size)
        scorer.spec.head_index(self.head)  # fail early, naming the heads
        return scorer

    @property
    def identity(self) -> str:
        mtime = (Path(self.model_dir) / "heads.safetensors").stat().st_mtime_ns
        return f"multihead:{self.model_dir}:{mtime}:{self.head}:{self.reduce}:{self.target_class}"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        scores = self.scorer.head_scores(prompts, responses, reduce=self.reduce, target_class=self.target_class)
        return scores[self.head].tolist()

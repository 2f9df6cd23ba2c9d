"""How a prompt and a response become one token sequence: the same at training and at generation.

Every path that tokenises a prompt for a causal LM goes through these rules: SFT data (RiC offline and
online, the reviews world's pretraining), the texts handed to TRL's DPO trainers, the transformers,
continuous-batching and vLLM generation backends, and NP-DPO's log-probabilities.

- **BOS** (:func:`token_ids`): a prompt's ids are its text's tokens (no special tokens), preceded by
  exactly one BOS when the tokenizer's defaults add one (Llama, Mistral, Gemma), never two: a rendered
  chat string that already starts with the BOS text keeps that one. A tokenizer that adds no BOS
  (GPT-2, SmolLM2) gets none. Texts handed to a TRL trainer, which tokenises with the defaults, lose a
  leading BOS text (:func:`trl_text`) for the same reason.
- **Join** (:func:`join_response`): a response is its text without surrounding whitespace (the RiC
  reference strips every response); it follows its prompt after one space, or directly when the
  prompt ends in whitespace (a chat template's ``assistant\\n``, a tag line). Offline data (``" Hello"``)
  and cleaned generations (``"Hello"``) then give the same text and the same tokens.
- **Truncation** (:func:`sft_example`): over ``max_length`` the prompt's oldest tokens go first (BOS
  stays), so the response, its EOS and the prompt's end (the last turn, RiC's tags) are always trained
  on; a sample whose response leaves the prompt less than a quarter of ``max_length`` is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def adds_bos(tokenizer: Any) -> bool:
    """True when the tokenizer's defaults put a BOS token in front of a text (Llama, Mistral, Gemma)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    with_special = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(with_special) > len(plain) and with_special[0] == bos


def token_ids(tokenizer: Any, text: str, bos: bool | None = None) -> list[int]:
    """The ids of ``text`` as the start of a sequence: exactly one BOS when the tokenizer uses one.

    ``bos``: whether the tokenizer adds a BOS (``None``: asked with :func:`adds_bos`; pass it to skip the
    probe when encoding many texts)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if (adds_bos(tokenizer) if bos is None else bos) and ids[:1] != [tokenizer.bos_token_id]:
        ids.insert(0, tokenizer.bos_token_id)
    return ids


def prompt_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """The ids of rendered prompts for generation (every backend), as training tokenised them."""
    bos = adds_bos(tokenizer)
    return [token_ids(tokenizer, t, bos) for t in texts]


def trl_text(tokenizer: Any, text: str) -> str:
    """``text`` for a trainer that tokenises with the tokenizer's defaults (TRL's DPO): a leading BOS text
    is dropped when the tokenizer adds its own, so the sequence holds one BOS, as :func:`token_ids` gives."""
    bos = getattr(tokenizer, "bos_token", None)
    if isinstance(text, str) and bos and text.startswith(bos) and adds_bos(tokenizer):
        return text[len(bos) :]
    return text


def trl_pair(tokenizer: Any, prompt: Any, chosen: Any, rejected: Any) -> dict[str, Any]:
    """A DPO row for TRL (which joins ``prompt + chosen`` as they are): one BOS, text responses joined by the
    one rule; conversational rows are left to TRL's chat template."""
    if not isinstance(prompt, str):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    prompt = trl_text(tokenizer, prompt)
    return {
        "prompt": prompt,
        "chosen": completion_text(prompt, chosen) if isinstance(chosen, str) else chosen,
        "rejected": completion_text(prompt, rejected) if isinstance(rejected, str) else rejected,
    }


def response_separator(prompt: str) -> str:
    """What goes between a prompt and its (stripped) response: nothing after whitespace, else one space."""
    return "" if not prompt or prompt[-1].isspace() else " "


def completion_text(prompt: str, response: str) -> str:
    """The text that follows ``prompt``: the separator and the stripped response."""
    return response_separator(prompt) + response.strip()


def join_response(prompt: str, response: str) -> str:
    """``prompt`` followed by ``response`` under the one join rule (see the module docstring)."""
    return prompt + completion_text(prompt, response)


def sft_example(tokenizer: Any, prompt: str, response: str, max_length: int | None, bos: bool | None = None) -> dict | None:
    """``{"input_ids", "labels"}`` of one SFT sample (loss on the response and its EOS only), or ``None``
    when the response leaves the prompt less than a quarter of ``max_length`` (the sample is dropped).

    The prompt's ids are exactly those generation feeds the model (:func:`token_ids`); the response's are
    its tokens in context (after the prompt), or its own tokens where tokens merge across the boundary."""
    bos = adds_bos(tokenizer) if bos is None else bos
    p = token_ids(tokenizer, prompt, bos)
    full = token_ids(tokenizer, join_response(prompt, response), bos)
    if full[: len(p)] == p:
        r = full[len(p) :]
    else:  # the prompt's last token merges with the response's first: the prompt keeps its own tokens
        r = list(tokenizer(completion_text(prompt, response), add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        r.append(tokenizer.eos_token_id)
    if max_length and len(p) + len(r) > max_length:
        head = 1 if bos and p[:1] == [tokenizer.bos_token_id] else 0
        room = max_length - len(r) - head
        if room < max_length // 4:
            return None
        p = p[:head] + p[len(p) - room :]
    return {"input_ids": p + r, "labels": [-100] * len(p) + r}

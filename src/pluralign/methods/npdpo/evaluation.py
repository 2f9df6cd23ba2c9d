"""Sequence log-probabilities of responses and NP-DPO's implicit-reward accuracy for a user's context.

The implicit reward is r(x, y) = beta * (log pi(y | x, z) - log pi_ref(y | x)), summed over RESPONSE tokens
only (with the EOS that training appends), exactly like the DPO loss sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from pluralign.models.sequences import adds_bos, join_response, token_ids


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@torch.no_grad()
def response_logprobs(
    model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 16, add_eos: bool = True
) -> list[float]:
    """Sum of log p(response tokens | prompt) per pair (prompt tokens and padding excluded); sequences begin
    as in training and generation (:func:`pluralign.models.sequences.token_ids`: one BOS where the tokenizer
    uses one, as TRL's DPO tokenisation gives), the response joined by the one rule (as training rows are)."""
    eos = tokenizer.eos_token or "" if add_eos else ""
    bos = adds_bos(tokenizer)
    seqs, starts = [], []
    for p, r in zip(prompts, responses):
        p_ids = token_ids(tokenizer, p, bos)
        full = token_ids(tokenizer, join_response(p, r) + eos, bos)
        seqs.append(full)
        starts.append(common_prefix_length(p_ids, full))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out: list[float] = []
    was_training = model.training
    model.eval()
    for b in range(0, len(seqs), batch_size):
        chunk, chunk_starts = seqs[b : b + batch_size], starts[b : b + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        resp = torch.zeros_like(ids, dtype=torch.bool)
        for i, (s, st) in enumerate(zip(chunk, chunk_starts)):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
            resp[i, st : len(s)] = True
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        out += (logp * resp[:, 1:].to(device)).sum(dim=1).cpu().tolist()
    model.train(was_training)
    return out


def implicit_reward_accuracy(
    policy, reference, pairs: Sequence[dict[str, Any]], context: Sequence[Any] | None
) -> float:
    """Share of ``pairs`` where the policy's implicit reward (under ``context``) prefers the chosen response."""
    prompts = [p["prompt"] for p in pairs]
    tok = policy.tokenizer
    lp_c = policy.log_probs(prompts, [p["chosen"] for p in pairs], context=context)
    lp_r = policy.log_probs(prompts, [p["rejected"] for p in pairs], context=context)
    ref_c = response_logprobs(reference, tok, prompts, [p["chosen"] for p in pairs])
    ref_r = response_logprobs(reference, tok, prompts, [p["rejected"] for p in pairs])
    wins = [(a - ra) - (b - rb) > 0 for a, b, ra, rb in zip(lp_c, lp_r, ref_c, ref_r)]
    return sum(wins) / max(1, len(wins))

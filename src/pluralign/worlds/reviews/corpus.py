"""A generated text world of short product reviews whose objectives genuinely conflict.

Each prompt asks for a review of an item; each response is 1-6 short sentences. The generator makes
long reviews mostly positive and short ones mostly negative, so across the corpus ``sentiment`` (VADER
compound, a real library scorer) and ``conciseness`` (minus the word count) are negatively correlated:
a reviewer who wants short AND positive text is asking for something rare in the data, which is
exactly the trade-off a steerable model has to learn to reach. The generator never writes labels; the
objectives are measured on the text by the scorers.
"""

from __future__ import annotations

import random

ITEMS = [
    "phone",
    "laptop",
    "camera",
    "coffee maker",
    "backpack",
    "chair",
    "lamp",
    "blender",
    "jacket",
    "headset",
    "keyboard",
    "bike",
    "tent",
    "watch",
    "kettle",
    "desk",
    "speaker",
    "novel",
    "movie",
    "game",
]
PARTS = ["design", "price", "battery", "screen", "build", "delivery", "size", "color", "sound", "manual"]
POSITIVE = ["great", "wonderful", "excellent", "lovely", "amazing", "good", "nice", "perfect", "fantastic"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "poor", "broken", "ugly", "disappointing", "horrible"]
NEUTRAL = ["fine", "standard", "average", "normal", "plain", "typical"]
PROMPTS = [
    "Write a review of the {item}.",
    "What do you think of the {item}?",
    "Tell me about the {item}.",
    "Give your opinion on the {item}.",
    "How was the {item}?",
]
SENTENCES = [
    "The {item} is {adj}.",
    "The {part} is {adj}.",
    "I found the {part} {adj}.",
    "Overall it was {adj}.",
    "Honestly the {part} felt {adj}.",
    "My friend said the {item} is {adj}.",
]


def _sentence(rng: random.Random, item: str, polarity: str) -> str:
    adj = rng.choice({"pos": POSITIVE, "neg": NEGATIVE, "neu": NEUTRAL}[polarity])
    if polarity != "neu" and rng.random() < 0.3:
        adj = f"really {adj}"
    return rng.choice(SENTENCES).format(item=item, part=rng.choice(PARTS), adj=adj)


def make_response(rng: random.Random, item: str) -> str:
    n = rng.randint(1, 6)
    p_pos = 0.05 + 0.16 * (n - 1)  # long reviews gush, short ones complain
    p_neg = max(0.0, 0.8 - 0.16 * (n - 1))
    sentences = []
    for _ in range(n):
        u = rng.random()
        polarity = "pos" if u < p_pos else ("neg" if u < p_pos + p_neg else "neu")
        sentences.append(_sentence(rng, item, polarity))
    return " " + " ".join(sentences)


def make_prompt(rng: random.Random) -> str:
    return rng.choice(PROMPTS).format(item=rng.choice(ITEMS))


def generate_corpus(n_prompts: int, responses_per_prompt: int = 4, seed: int = 0) -> list[dict[str, str]]:
    """``n_prompts * responses_per_prompt`` samples ``{"prompt", "response"}`` (several per prompt, so
    pairwise methods can compare responses to the same prompt)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_prompts):
        prompt = make_prompt(rng)
        item = next(i for i in sorted(ITEMS, key=len, reverse=True) if i in prompt)
        for _ in range(responses_per_prompt):
            out.append({"prompt": prompt, "response": make_response(rng, item)})
    return out


def eval_prompts(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return [make_prompt(rng) for _ in range(n)]

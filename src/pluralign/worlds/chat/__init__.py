"""The chat world: SmolLM2-135M-Instruct answering chat prompts, scored for relevance and sentiment."""

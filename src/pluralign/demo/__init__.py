"""The embedded default: a generated text world, a tiny GPT pretrained on it, and the demo runner."""

"""Built-in worlds for `pluralign demo`: reviews (the toy text world), chat (SmolLM2), images (a tiny text-to-image world)."""

"""The reviews world: a toy corpus, a tiny pretrained LM, fitted objectives, and every method's demo hook (one module per method)."""

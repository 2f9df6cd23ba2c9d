"""Loading and building models: causal LMs and tokenizers, builtin models, frozen embeddings, neural-process and text-to-image networks; a trained model's manifest; process and device state."""

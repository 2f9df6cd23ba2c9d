"""BTL: the context-free Bradley-Terry reward model on frozen embeddings (the NP-BTL baseline)."""

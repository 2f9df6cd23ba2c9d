"""Generation: the steerable-policy interface, the one batched dispatcher, its backends, prompts and cleaning."""

"""Generation: steerable policies and load_policy, the one batched dispatcher, its backends, prompts and cleaning."""

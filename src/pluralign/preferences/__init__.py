"""Preferences: weight vectors, preference-to-reward mappings, reward tags, and weights inferred from a user's choices."""

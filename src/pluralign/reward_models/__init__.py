"""Reward-model types (btl, npbtl, multihead, classifier): each a config, a trainer and a loader; they never import each other."""

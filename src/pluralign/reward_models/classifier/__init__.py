"""Classifier: a pretrained model fine-tuned as a one-output sequence-classification reward model (TRL RewardTrainer)."""

"""Steerable training methods, one folder each (config, trainer, policy, cli); a method never imports another."""

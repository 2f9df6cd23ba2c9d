"""Ensemble: several trained reward models as one, the mean of their z-scored rewards."""

"""One folder per method: config dataclass, trainer, CLI entry (cli.py), steering (policy.py), demo hook (demo.py)."""

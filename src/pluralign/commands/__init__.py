"""The non-training CLI commands (one module each, each with ``run(argv)``)."""

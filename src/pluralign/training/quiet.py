"""Keeping the terminal for pluralign's own lines: library progress bars and deprecation noise off.

Light on purpose (no transformers trainer import): the CLI calls it before every command.
"""

from __future__ import annotations

import os


def quiet_libraries() -> None:
    """Keep the terminal for pluralign's own progress lines: no weight-loading or dataset-map bars."""

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    # TRL and PEFT still use transformers' renamed ``gradient_checkpointing*`` names (now
    # ``activation_checkpointing*``): a deprecation inside the libraries that no user setting avoids
    warnings.filterwarnings(
        "ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning
    )
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - both are dependencies
        pass

"""User-facing errors.

Every mistake a user can make (a bad preference, a missing column, a missing file, an unknown config
key) raises a :class:`PluralignError` subclass whose message is one line naming the field and the
fix. The CLI prints that line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class PluralignError(Exception):
    """Base class of errors caused by user input; the message is shown as is."""


class ConfigError(PluralignError, ValueError):
    """A config file, config key or flag value is wrong."""


class DataError(PluralignError, ValueError):
    """A dataset is missing a column, is empty, or holds invalid values."""


class PreferenceError(PluralignError, ValueError):
    """A preference vector is malformed (negative, NaN, missing weight, unknown objective)."""


class ModelNotFoundError(PluralignError, FileNotFoundError):
    """A model path or hub id cannot be found."""

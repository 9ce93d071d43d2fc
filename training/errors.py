"""The training package's user-facing error base.

``training`` cannot import ``keel``; the platform's CLI treats a ``TrainingError`` like its own
``KeelError``: one line for the user, no traceback.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A problem worth one line to the user (bad recipe, missing data, refused run)."""

"""The training package's user-facing error base.

``training`` cannot import ``keel``; the platform's CLI treats a ``TrainingError`` like its own
``KeelError`` (one line for the user, no traceback), and its API answers one with the attributes below
(see keel/errors.py): ``status`` (HTTP), ``code`` and ``param``.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A problem worth one line to the user (bad recipe, missing data, refused run)."""

    status: int = 400
    code: str | None = None
    param: str | None = None

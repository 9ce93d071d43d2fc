"""The platform's user-facing error base.

A ``KeelError`` (or one of the engine-side packages' own bases, which cannot import ``keel``) is a
problem the user can act on: the CLI prints it as one line and exits non-zero, the admin API answers
it as OpenAI-style JSON. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class KeelError(Exception):
    """A problem worth one line to the user (bad input, missing file, refused operation)."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every package's user-facing base: what the CLI prints as one line instead of a traceback."""
    from flywheel.errors import FlywheelError
    from serving.errors import ServingError
    from training.errors import TrainingError

    return (KeelError, ServingError, TrainingError, FlywheelError)

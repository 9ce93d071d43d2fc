"""The flywheel package's user-facing error base (flywheel cannot import keel's ``KeelError``)."""

from __future__ import annotations


class FlywheelError(Exception):
    """A problem worth one line to the user (nothing to export, a refused cycle)."""

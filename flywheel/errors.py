"""The flywheel package's user-facing error base (flywheel cannot import keel's ``KeelError``).

It declares the attributes keel's API handler reads (see keel/errors.py): ``status``, ``code``, ``param``.
"""

from __future__ import annotations


class FlywheelError(Exception):
    """A problem worth one line to the user (nothing to export, a refused cycle)."""

    status: int = 400
    code: str | None = None
    param: str | None = None

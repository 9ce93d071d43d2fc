"""The platform's user-facing error base, and the one rule that maps every package's errors to HTTP.

A ``KeelError`` (or one of the engine-side packages' own bases, which cannot import ``keel``) is a
problem the user can act on: the CLI prints it as one line and exits non-zero, the admin API answers
it as OpenAI-style JSON. Anything else is a bug and keeps its traceback.

Every base (``KeelError``, ``serving.errors.ServingError``, ``training.errors.TrainingError``,
``flywheel.errors.FlywheelError``) declares the same three class attributes: ``status`` (the HTTP
status, 400 unless a subclass says otherwise), ``code`` and ``param`` (OpenAI's error fields). A
subclass states what it means over HTTP by overriding them (``UnknownVersion.status = 404``), so routes
raise and never catch: ``keel.api.errors`` registers one handler per base, by type, and reads the
attributes. The engine-side packages need no import of ``keel`` for that, only the attribute names.
"""

from __future__ import annotations


class KeelError(Exception):
    """A problem worth one line to the user (bad input, missing file, refused operation)."""

    status: int = 400
    code: str | None = None
    param: str | None = None


class NotFound(KeelError):
    """What the request names does not exist."""

    status = 404
    code = "not_found"


class Conflict(KeelError):
    """The request is valid, but the platform's state refuses it now (something already running)."""

    status = 409
    code = "conflict"


class Unavailable(KeelError):
    """Not taken now, for a reason that passes (busy, or out of disk space): retry later."""

    status = 503
    code = "busy"


class NoSpace(Unavailable):
    """A write the disk refused (full): nothing half-written was kept; retry once space is freed.
    HTTP's own status for it, 507."""

    status = 507
    code = "insufficient_storage"


def user_errors() -> tuple[type[Exception], ...]:
    """Every package's user-facing base: what the CLI prints as one line instead of a traceback, and
    what the API's one handler answers in OpenAI's shape with the error's own ``status``."""
    from flywheel.errors import FlywheelError
    from serving.errors import ServingError
    from training.errors import TrainingError

    return (KeelError, ServingError, TrainingError, FlywheelError)


def http_status(exc: BaseException) -> int:
    """The HTTP status an error declares (400 when it declares none or an impossible one)."""
    status = getattr(exc, "status", 400)
    return status if isinstance(status, int) and 400 <= status < 600 else 400

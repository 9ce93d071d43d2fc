"""The trust policy: which mined pairs train without review, and how a review overrides it.

Pure rules over a pair's source and its review status, so the platform (which stores the decision next to
the review's) and tests share them.
"""

from __future__ import annotations

from flywheel.config import TrustPolicy


def auto_accept_rule(source: str, policy: TrustPolicy) -> str | None:
    """The rule that lets a freshly mined pair skip review (its source), or None: it waits for review."""
    return source if source in policy.auto_accept else None


def in_dpo_snapshot(status: str, auto_accepted_by: str | None) -> bool:
    """A review decides when there is one (accepted: in; rejected or disputed: out, trusted or not); until
    then a trusted pair is in and the rest wait."""
    if status == "accepted":
        return True
    return status == "pending" and auto_accepted_by is not None

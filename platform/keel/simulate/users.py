"""The judged user model of `keel simulate`: what a simulated user does with an answer, given its score.

Fixed and written down before any measurement with it (issue 26); a later change is recorded in
README.md ("Judged simulation") with its reason, never tuned to make a benchmark come out.

For a domain question that has a reference answer, the answer the user received (the engine's text,
without the gateway's "Sources" list) is scored against the reference by the judge
(:mod:`training.eval.judge`: chrF on characters, 0..1, and 0 for an empty answer or one in another
language than the question's). Then, with ``s`` that score:

1. The user is **satisfied** with probability ``p(s) = 1 / (1 + exp(-(s - midpoint) / spread))``, a logistic
   curve with ``midpoint = 0.20`` and ``spread = 0.06``. The anchors, all from hand-written texts and the
   bank's own references (never from model answers): the reference of another question on the same docs
   scores 0.085 on average (p = 0.13: off-topic answers are mostly disliked); a short correct Chinese answer
   ("是的，TiDB 支持二级索引。") 0.20 (p = 0.5); a fuller correct one 0.40 (p = 0.97); an empty or
   other-language answer 0 (p = 0.035).
2. With probability ``rate = 0.6`` the user leaves a thumb: **up** when satisfied, **down** otherwise.
3. An unsatisfied user **edits** the answer with probability ``edit = 0.3``: the edited text is the
   question's reference (what a person who knows the answer would write).
4. An unsatisfied user who rated down and did not edit **regenerates** with probability ``regenerate =
   0.5``; the new answer is scored the same way, and the user always rates it (up when satisfied).

So P(thumbs down) = 0.6 (1 - p(s)) and P(edit) = 0.3 (1 - p(s)) fall as the answer approaches its
reference, and a better model gets fewer of both. Each user draws from its own random generator, seeded by
the run's seed and the request's arrival number, so the same seed and the same answers give the same
feedback whatever order the answers come back in.

Questions without a reference (small talk, out of scope) and every question under ``--judge off`` keep
the fixed rates of the earlier simulator (:class:`keel.simulate.traffic.Behaviour`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pydantic import BaseModel, Field


class UserModel(BaseModel):
    """The judged user model's parameters (see the module docstring for what each does)."""

    midpoint: float = Field(
        0.20, ge=0, le=1, description="Judge score at which half the users are satisfied."
    )
    spread: float = Field(
        0.06, gt=0, description="Logistic width: how sharply satisfaction rises with score."
    )
    rate: float = Field(0.6, ge=0, le=1, description="Probability that a user leaves a thumb.")
    edit: float = Field(0.3, ge=0, le=1, description="Probability that an unsatisfied user edits.")
    regenerate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Probability that an unsatisfied user who rated down (and did not edit) regenerates.",
    )

    def p_satisfied(self, score: float) -> float:
        z = (score - self.midpoint) / self.spread
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def p_thumbs_down(self, score: float) -> float:
        return self.rate * (1.0 - self.p_satisfied(score))

    def p_edit(self, score: float) -> float:
        return self.edit * (1.0 - self.p_satisfied(score))

    def react(self, score: float, rng: random.Random) -> Reaction:
        """What one user does with an answer of this score (draws in a fixed order from ``rng``)."""
        satisfied = rng.random() < self.p_satisfied(score)
        rates = rng.random() < self.rate
        edits = not satisfied and rng.random() < self.edit
        regenerates = not satisfied and rates and not edits and rng.random() < self.regenerate
        thumb = ("up" if satisfied else "down") if rates else None
        return Reaction(satisfied, thumb, edits, regenerates)

    def rate_again(self, score: float, rng: random.Random) -> str:
        """The thumb a user who regenerated gives the new answer."""
        return "up" if rng.random() < self.p_satisfied(score) else "down"


@dataclass(frozen=True)
class Reaction:
    satisfied: bool
    thumb: str | None  # "up", "down" or None (no thumb)
    edit: bool
    regenerate: bool


def user_rng(seed: int | None, n: int) -> random.Random:
    """The generator of the n-th arrival's user: fixed by (seed, n), independent of completion order."""
    return random.Random(f"keel-simulate:{seed}:{n}")

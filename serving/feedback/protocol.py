"""Wire models for POST /v1/feedback (one discriminated union on ``type``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 100_000


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200, description="The x-request-id of the answer.")
    comment: str | None = Field(None, max_length=5_000, description="Free text kept with the feedback.")


class ThumbsFeedback(_Base):
    type: Literal["thumbs"]
    rating: Literal["up", "down"]


class EditFeedback(_Base):
    type: Literal["edit"]
    edited_text: str = Field(min_length=1, max_length=MAX_TEXT, description="The corrected answer.")


class RegenerateFeedback(_Base):
    type: Literal["regenerate"]
    new_request_id: str = Field(min_length=1, max_length=200, description="The request that replaced it.")


class ChoiceFeedback(_Base):
    type: Literal["choice"]
    other_request_id: str = Field(min_length=1, max_length=200, description="The other answer compared.")
    preferred: Literal["this", "other", "neither"]


class RouteFeedback(_Base):
    """The router sent this request down the wrong route; `intent` is the one it should have taken.
    Flagged messages become labelled router examples for the next (gated) router fit."""

    type: Literal["route"]
    intent: Literal["domain", "chat", "out_of_scope"]


class ScoreFeedback(_Base):
    """A grader's score of the answer, 0 (worst) to 1: the judged simulation's chrF judge, or an offline
    grader a team runs over its own traffic. A signal the canary compares between arms (its ``judge_score``);
    mining never turns it into training data (thumbs, edits, regenerations and choices are the training
    signals), so a score can only stop or pass a candidate, never teach one."""

    type: Literal["score"]
    score: float = Field(ge=0, le=1, allow_inf_nan=False, description="The grader's score, 0 to 1.")


FeedbackRequest = Annotated[
    ThumbsFeedback | EditFeedback | RegenerateFeedback | ChoiceFeedback | RouteFeedback | ScoreFeedback,
    Field(discriminator="type"),
]


class FeedbackObject(BaseModel):
    """What the endpoint returns: the stored feedback (the same object again for a duplicate)."""

    id: str
    object: Literal["feedback"] = "feedback"
    request_id: str
    type: str
    created_at: int
    duplicate: bool = False

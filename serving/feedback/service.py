"""The logic behind POST /v1/feedback: authenticate, validate, check ownership, store idempotently."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from serving.errors import APIError
from serving.feedback.protocol import (
    ChoiceFeedback,
    EditFeedback,
    FeedbackObject,
    FeedbackRequest,
    RegenerateFeedback,
    RouteFeedback,
    ScoreFeedback,
    ThumbsFeedback,
)
from serving.gateway.auth import KeyVerifier, Principal, authenticate
from serving.gateway.body import json_object, read_body
from serving.gateway.chat import new_request_id

_ADAPTER: TypeAdapter = TypeAdapter(FeedbackRequest)
FEEDBACK_TYPES = ("thumbs", "edit", "regenerate", "choice", "route", "score")
# Roles that may judge any request (annotators compare answers they did not ask for).
REVIEWER_ROLES = ("annotator", "admin")


@dataclass(frozen=True)
class RequestOwner:
    request_id: str
    key_id: str | None


@dataclass
class FeedbackRecord:
    """One feedback row as the store receives it."""

    request_id: str
    key_id: str
    kind: str
    dedup_key: str
    rating: int | None = None
    comment: str | None = None
    edited_text: str | None = None
    other_request_id: str | None = None
    preferred: str | None = None
    intent: str | None = None  # route: the intent the request should have been routed to
    score: float | None = None  # score: a grader's 0-1 score of the answer

    def judgement(self) -> list[Any]:
        """Who judged which request how: the fields a duplicate repeats (and the store's columns)."""
        return [
            self.request_id,
            self.key_id,
            self.kind,
            self.rating,
            self.comment,
            self.edited_text,
            self.other_request_id,
            self.preferred,
        ]


class FeedbackStore(Protocol):
    def owner(self, request_id: str) -> RequestOwner | None: ...

    def add(self, record: FeedbackRecord) -> tuple[str, datetime, bool]:
        """Store (or find the identical) feedback: (feedback id, created at, duplicate?)."""
        ...


def to_record(fb: Any, principal: Principal) -> FeedbackRecord:
    rec = FeedbackRecord(
        request_id=fb.request_id, key_id=principal.key_id, kind=fb.type, comment=fb.comment, dedup_key=""
    )
    if isinstance(fb, ThumbsFeedback):
        rec.rating = 1 if fb.rating == "up" else -1
    elif isinstance(fb, EditFeedback):
        rec.edited_text = fb.edited_text
    elif isinstance(fb, RegenerateFeedback):
        rec.other_request_id = fb.new_request_id
    elif isinstance(fb, ChoiceFeedback):
        rec.other_request_id, rec.preferred = fb.other_request_id, fb.preferred
    elif isinstance(fb, RouteFeedback):
        rec.intent = fb.intent
    elif isinstance(fb, ScoreFeedback):
        rec.score = fb.score
    # The same person sending the same judgement twice (a retry, a double click) is one row.
    # old rows' keys stay as they were: the intent and the score join the key only when there is one
    extra = [v for v in (rec.intent, rec.score) if v is not None]
    payload = orjson.dumps([*rec.judgement(), *extra])
    rec.dedup_key = hashlib.sha256(payload).hexdigest()
    return rec


@dataclass
class FeedbackService:
    verifier: KeyVerifier
    store: FeedbackStore
    max_body_bytes: int = 1_048_576
    body_timeout_s: float = 30.0

    async def handle(self, request: Request) -> JSONResponse:
        try:
            principal = authenticate(self.verifier, request.headers.get("authorization"))
            # a size and a time limit, and a client that left mid-body is a 499, not a traceback
            raw = await read_body(request, self.max_body_bytes, self.body_timeout_s)
            fb = self.parse(raw)
            rec = to_record(fb, principal)
            # the store touches the database (and may wait for the log writer): keep it off the event loop
            fid, created, duplicate = await asyncio.to_thread(self._store, rec, principal)
        except APIError as e:
            return e.response({"x-request-id": new_request_id()})
        out = FeedbackObject(
            id=fid,
            request_id=rec.request_id,
            type=rec.kind,
            created_at=int(created.timestamp()),
            duplicate=duplicate,
        )
        return JSONResponse(out.model_dump(), status_code=200 if duplicate else 201)

    def submit(self, body: dict[str, Any], principal: Principal) -> FeedbackObject:
        """The endpoint's path for a caller inside the platform that has already authenticated the
        principal (the annotation page's route flags): the same validation, ownership check and
        idempotent store as ``POST /v1/feedback``; raises APIError as the endpoint would answer it."""
        fb = self.parse(orjson.dumps(body))
        rec = to_record(fb, principal)
        fid, created, duplicate = self._store(rec, principal)
        return FeedbackObject(
            id=fid,
            request_id=rec.request_id,
            type=rec.kind,
            created_at=int(created.timestamp()),
            duplicate=duplicate,
        )

    @staticmethod
    def parse(raw: bytes) -> Any:
        body = json_object(raw)
        try:
            return _ADAPTER.validate_python(body)
        except ValidationError as e:
            err = e.errors()[0]
            # drop the union tag pydantic puts first in the location ("thumbs.rating" → "rating"; the
            # score type's own field is "score" too: "score.score" → "score")
            loc = [str(p) for p in err.get("loc", ())]
            loc = loc[1:] if loc and loc[0] in FEEDBACK_TYPES else loc
            param = ".".join(loc) or None
            msg = err.get("msg", "bad request")
            if err.get("type") == "union_tag_invalid" or err.get("type") == "union_tag_not_found":
                param = "type"
                msg = f"'type' must be one of {', '.join(FEEDBACK_TYPES)}"
            raise APIError(
                400, f"invalid '{param}': {msg}" if param else msg, "invalid_request", param
            ) from e

    def _store(self, rec: FeedbackRecord, principal: Principal) -> tuple[str, datetime, bool]:
        self.check(rec, principal)
        return self.store.add(rec)

    def check(self, rec: FeedbackRecord, principal: Principal) -> None:
        """Every id must exist; users judge only their own requests, reviewers any."""
        ids = [("request_id", rec.request_id)]
        if rec.other_request_id:
            ids.append(
                ("new_request_id" if rec.kind == "regenerate" else "other_request_id", rec.other_request_id)
            )
        if rec.kind == "choice" and principal.role not in REVIEWER_ROLES:
            raise APIError(403, "choice feedback needs an annotator key", "permission_denied", "type")
        if rec.other_request_id == rec.request_id:
            raise APIError(400, "the two request ids must differ", "invalid_request", ids[1][0])
        for param, rid in ids:
            owner = self.store.owner(rid)
            if owner is None:
                raise APIError(404, f"no request with id '{rid}'", "request_not_found", param)
            if principal.role not in REVIEWER_ROLES and owner.key_id != principal.key_id:
                raise APIError(
                    403, f"request '{rid}' was made with another API key", "permission_denied", param
                )

"""Admin API: what the CLI uses while the platform holds the database."""

from __future__ import annotations

import hmac
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from keel.keys import KeyError_
from serving.errors import APIError
from serving.gateway.auth import bearer_token

router = APIRouter(prefix="/admin")


def require_admin(request: Request) -> str:
    token = bearer_token(request.headers.get("authorization"))
    platform = request.app.state.platform
    if token and hmac.compare_digest(token, platform.admin_key):
        return "admin"
    principal = platform.keys.verify(token) if token else None
    if principal is not None and principal.role == "admin":
        return principal.name
    raise APIError(401, "admin key required", code="invalid_api_key")


Admin = Annotated[str, Depends(require_admin)]


class KeyCreate(BaseModel):
    name: str
    role: str = "user"


def _info(k) -> dict:
    return {
        "key_id": k.key_id,
        "name": k.name,
        "role": k.role,
        "created_at": k.created_at.isoformat() if k.created_at else None,
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }


@router.get("/keys")
def list_keys(request: Request, _: Admin) -> list[dict]:
    return [_info(k) for k in request.app.state.platform.keys.list()]


@router.post("/keys")
def create_key(request: Request, body: KeyCreate, _: Admin) -> dict:
    try:
        info, secret = request.app.state.platform.keys.create(body.name, body.role)
    except KeyError_ as e:
        raise APIError(400, str(e)) from e
    return {**_info(info), "key": secret}


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, _: Admin) -> dict:
    try:
        return _info(request.app.state.platform.keys.revoke(key_id))
    except KeyError_ as e:
        raise APIError(404, str(e)) from e


@router.get("/status")
def status(request: Request, _: Admin) -> dict:
    p = request.app.state.platform
    return {
        "version": p.pool.version,
        "requestlog": p.writer.stats(),
        "engine_error": p.supervisor.last_error,
    }


@router.get("/requests")
def list_requests(
    request: Request,
    _: Admin,
    id: Annotated[list[str] | None, Query()] = None,
    limit: int = 50,
) -> list[dict]:
    """Request log rows, newest first (optionally only the given request ids)."""
    db = request.app.state.platform.db
    cols = "request_id, created_at, key_id, model, checkpoint_version, engine_url, stream, messages, params, response_text, choices, finish_reason, route, route_confidence, retrieved, prompt_tokens, completion_tokens, ttft_ms, latency_ms, retrieval_ms, generation_ms, status_code, error, regenerate_of, meta"
    if id:
        marks = ",".join("?" * len(id))
        cur = db.cursor().execute(f"SELECT {cols} FROM requests WHERE request_id IN ({marks})", id)
    else:
        cur = db.cursor().execute(
            f"SELECT {cols} FROM requests ORDER BY created_at DESC LIMIT ?", [min(limit, 1000)]
        )
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        item["created_at"] = item["created_at"].isoformat()
        for k in ("messages", "params", "choices", "retrieved", "meta"):
            if isinstance(item[k], str):
                item[k] = json.loads(item[k])
        out.append(item)
    return out


@router.get("/requests/count")
def count_requests(request: Request, _: Admin) -> dict:
    db = request.app.state.platform.db
    return {"count": db.fetchall("SELECT count(*) FROM requests")[0][0]}

"""Admin API for API keys: what `keel keys` uses while the platform holds the database."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from keel.api.deps import Admin
from keel.store.keys import KeyError_
from serving.errors import APIError

router = APIRouter(prefix="/admin")


class KeyCreate(BaseModel):
    name: str
    role: str = "user"


@router.get("/keys")
def list_keys(request: Request, _: Admin) -> list[dict]:
    return [k.to_dict() for k in request.app.state.platform.keys.list()]


@router.post("/keys")
def create_key(request: Request, body: KeyCreate, _: Admin) -> dict:
    try:
        info, secret = request.app.state.platform.keys.create(body.name, body.role)
    except KeyError_ as e:
        raise APIError(400, str(e)) from e
    return {**info.to_dict(), "key": secret}


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, _: Admin) -> dict:
    try:
        return request.app.state.platform.keys.revoke(key_id).to_dict()
    except KeyError_ as e:
        raise APIError(404, str(e)) from e

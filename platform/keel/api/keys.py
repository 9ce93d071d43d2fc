"""Admin API for API keys: what `keel keys` uses while the platform holds the database."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from keel.api.deps import Admin

router = APIRouter(prefix="/admin")


class KeyCreate(BaseModel):
    name: str
    role: str = "user"


@router.get("/keys")
def list_keys(request: Request, _: Admin) -> list[dict]:
    return [k.to_dict() for k in request.app.state.platform.keys.list()]


@router.post("/keys")
def create_key(request: Request, body: KeyCreate, _: Admin) -> dict:
    info, secret = request.app.state.platform.keys.create(body.name, body.role)
    return {**info.to_dict(), "key": secret}


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, _: Admin) -> dict:
    return request.app.state.platform.keys.revoke(key_id).to_dict()

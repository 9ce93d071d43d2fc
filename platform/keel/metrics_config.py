"""The ``metrics`` config section (its own module: keel.config imports it, and must stay light)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MetricsConfig(BaseModel):
    """The ``metrics`` section (filled by keel.config)."""

    enabled: bool = Field(True, description="Serve GET /metrics.")
    auth: Literal["admin", "none"] = Field(
        "admin",
        description="admin: scrapers send 'Authorization: Bearer <admin key>' (Prometheus "
        "`authorization.credentials_file`); none: open to anyone who reaches the port.",
    )
    engine_scrape_timeout_s: float = Field(
        1.0, gt=0, description="Per scrape, how long to wait for each engine's own /metrics."
    )

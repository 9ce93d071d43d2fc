-- Aliases (issue 14): `champion` names the serving version, as MLflow / W&B model aliases do. Promotion and
-- rollback move it; every move is kept.
CREATE TABLE IF NOT EXISTS aliases (
    alias       VARCHAR PRIMARY KEY,
    version     VARCHAR NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by  VARCHAR
);
CREATE TABLE IF NOT EXISTS alias_history (
    move_id       VARCHAR PRIMARY KEY,
    alias         VARCHAR NOT NULL,
    from_version  VARCHAR,
    to_version    VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,   -- initial | promote | rollback
    swap_id       VARCHAR,            -- the swaps row that moved it
    reason        VARCHAR,
    by_whom       VARCHAR,
    moved_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

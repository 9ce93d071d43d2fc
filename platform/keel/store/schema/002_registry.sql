-- Checkpoint registry history: every promotion and rollback, successful or not.
CREATE TABLE IF NOT EXISTS swaps (
    swap_id       VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL,        -- promote | rollback
    from_version  VARCHAR,
    to_version    VARCHAR NOT NULL,
    strategy      VARCHAR,                 -- in_place | blue_green | offline
    status        VARCHAR NOT NULL,        -- running | succeeded | failed | interrupted
    reason        VARCHAR,                 -- why (from the user) or what failed
    forced        BOOLEAN NOT NULL DEFAULT false,
    by_whom       VARCHAR,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    seconds       DOUBLE,
    held_seconds  DOUBLE
);
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS promoted_at TIMESTAMPTZ;
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS promoted_by VARCHAR;
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS retired_at TIMESTAMPTZ;
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS rolled_back_at TIMESTAMPTZ;
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS rolled_back_by VARCHAR;

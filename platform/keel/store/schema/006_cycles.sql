-- Flywheel cycles: one row per cycle and one per step (flywheel/cycle.py decides; these rows record).
CREATE TABLE IF NOT EXISTS cycles (
    cycle_id     VARCHAR PRIMARY KEY,
    status       VARCHAR NOT NULL,        -- running | succeeded | failed | cancelled | interrupted
    trigger      VARCHAR NOT NULL,        -- cli | api | schedule
    stages       JSON NOT NULL,
    dry_run      BOOLEAN NOT NULL DEFAULT false,
    config       JSON NOT NULL,           -- the cycle section it ran with (resume uses the same)
    serving      JSON,                    -- {version, path} that served when it began
    outcome      VARCHAR,                 -- promoted | rejected | nothing_to_train | dry_run
    error        VARCHAR,
    report       VARCHAR,                 -- the cycle's HTML report
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS cycle_steps (
    cycle_id     VARCHAR NOT NULL,
    name         VARCHAR NOT NULL,        -- mine | snapshot:<stage> | train:<stage> | evaluate | gate | promote
    seq          INTEGER NOT NULL,
    status       VARCHAR NOT NULL,        -- running | done | skipped | failed | cancelled | interrupted
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    input_hash   VARCHAR,
    output_hash  VARCHAR,
    output       JSON,
    reason       VARCHAR,                 -- why it was skipped
    error        VARCHAR,
    attempts     INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (cycle_id, name)
);

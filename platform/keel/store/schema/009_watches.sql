-- Watch after promotion (issue 14, build 11): one row per watched promotion and what it decided.
CREATE TABLE IF NOT EXISTS watches (
    watch_id      VARCHAR PRIMARY KEY,
    version       VARCHAR NOT NULL,        -- the new champion
    previous      VARCHAR,                 -- the champion it replaced (the comparison, the rollback target)
    swap_id       VARCHAR,
    status        VARCHAR NOT NULL,        -- running | passed | rolled_back | inconclusive | superseded | interrupted | failed
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    reason        VARCHAR,
    verdict       JSON,                    -- every signal: rates/medians, n, p, worse
    rollback_swap VARCHAR                  -- the swaps row of the automatic rollback
);

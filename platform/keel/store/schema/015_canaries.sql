-- Issue 27: a canary is a candidate serving a sticky share of live traffic beside the champion until a
-- sequential test decides. One row per canary; its figures are the last decision's per-arm signals.
CREATE TABLE IF NOT EXISTS canaries (
    canary_id     VARCHAR PRIMARY KEY,
    version       VARCHAR NOT NULL,          -- the candidate
    champion      VARCHAR,                   -- what served beside it
    share         DOUBLE NOT NULL,
    status        VARCHAR NOT NULL,          -- running | promoted | stopped | rejected | inconclusive | interrupted | failed
    reason        VARCHAR,
    figures       JSON,                      -- flywheel.canary.CanaryVerdict at the last look
    cycle_id      VARCHAR,                   -- the cycle that started it (NULL: by hand)
    started_by    VARCHAR,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ
);

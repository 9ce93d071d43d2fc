-- Eval runs and gate decisions per checkpoint version (the JSON files beside the checkpoint stay the
-- full record; these rows make them queryable and tie a gate to its candidate and baseline).
CREATE TABLE IF NOT EXISTS evals (
    eval_id     VARCHAR PRIMARY KEY,      -- <version>/<suite-name> or <version>/<suite-name>-vs-<baseline>
    version     VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,         -- run | gate | comparison
    name        VARCHAR NOT NULL,         -- gate-0shot, full-5shot, ...
    baseline    VARCHAR,                  -- gates and comparisons
    complete    BOOLEAN,                  -- runs: every part scored, no --limit
    passed      BOOLEAN,                  -- gates
    path        VARCHAR NOT NULL,         -- the eval JSON, or decision.json / report.html
    summary     JSON,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Issue 26: feedback trains unattended.
-- The trust policy's decision sits next to the review's: a pair the policy trusts is in the DPO snapshot
-- without review, yet stays `pending` in the review queue; a review (accepted / rejected) always wins.
ALTER TABLE pairs ADD COLUMN IF NOT EXISTS auto_accepted_by VARCHAR;     -- the policy's rule (edit | choice | regenerate ...)
ALTER TABLE pairs ADD COLUMN IF NOT EXISTS auto_accepted_at TIMESTAMPTZ;

-- KTO examples: a logged answer rated up (label true) or down (false), with its provenance.
CREATE TABLE IF NOT EXISTS kto_examples (
    example_id    VARCHAR PRIMARY KEY,
    example_key   VARCHAR NOT NULL UNIQUE,
    request_id    VARCHAR NOT NULL,                 -- the rated request (its latest rating is the one trained)
    source        VARCHAR NOT NULL,                 -- thumbs_up | thumbs_down
    prompt        JSON NOT NULL,                    -- what the engine saw (engine_messages)
    completion    VARCHAR NOT NULL,                 -- the model's own answer
    label         BOOLEAN NOT NULL,
    route         VARCHAR,
    provenance    JSON NOT NULL,
    mining_run    VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS kto_examples_request_idx ON kto_examples (request_id);

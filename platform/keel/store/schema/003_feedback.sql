-- Feedback, preference pairs, SFT examples, annotation decisions, mining runs and exports (issue 5).
-- Rows point at request rows by request id (requests are inserted by the batch writer, so no FK constraint:
-- the feedback API checks the request exists before it writes).

CREATE TABLE IF NOT EXISTS feedback (
    feedback_id       VARCHAR PRIMARY KEY,
    request_id        VARCHAR NOT NULL,             -- the request the feedback is about
    key_id            VARCHAR NOT NULL,             -- who gave it
    kind              VARCHAR NOT NULL,             -- thumbs | edit | regenerate | choice
    rating            INTEGER,                      -- thumbs: +1 / -1
    comment           VARCHAR,
    edited_text       VARCHAR,                      -- edit: the user's corrected answer
    other_request_id  VARCHAR,                      -- regenerate: the new request; choice: the other response
    preferred         VARCHAR,                      -- choice: this | other | neither
    dedup_key         VARCHAR NOT NULL UNIQUE,      -- same feedback twice → the same row (idempotent)
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS feedback_request_idx ON feedback (request_id);

-- Second answers to sampled prompts, generated off the request path so annotators have pairs to compare.
CREATE TABLE IF NOT EXISTS candidates (
    candidate_id        VARCHAR PRIMARY KEY,
    request_id          VARCHAR NOT NULL,
    response_text       VARCHAR,
    checkpoint_version  VARCHAR,
    params              JSON,
    latency_ms          DOUBLE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Preference pairs: mined (or candidate) pairs wait for review; an annotation queue item is a pending pair.
-- `chosen`/`rejected` are the proposed order; annotators accept, swap, reject or edit it.
CREATE TABLE IF NOT EXISTS pairs (
    pair_id            VARCHAR PRIMARY KEY,
    pair_key           VARCHAR NOT NULL UNIQUE,     -- hash of the source and the ids it came from
    source             VARCHAR NOT NULL,            -- edit | regenerate | thumbs | choice | candidate
    prompt             JSON NOT NULL,               -- conversation up to the answer (list of messages)
    chosen             VARCHAR NOT NULL,
    rejected           VARCHAR NOT NULL,
    route              VARCHAR,
    retrieved          JSON,
    provenance         JSON NOT NULL,               -- request ids, feedback ids, checkpoint versions
    status             VARCHAR NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected
    required_reviews   INTEGER NOT NULL DEFAULT 1,
    final_chosen       VARCHAR,                     -- after review (swap / edit applied)
    final_rejected     VARCHAR,
    lease_key_id       VARCHAR,
    lease_token        VARCHAR,
    lease_expires_at   TIMESTAMPTZ,
    mining_run         VARCHAR,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    reviewed_at        TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS annotations (
    annotation_id   VARCHAR PRIMARY KEY,
    pair_id         VARCHAR NOT NULL,
    key_id          VARCHAR NOT NULL,
    annotator       VARCHAR NOT NULL,
    decision        VARCHAR NOT NULL,               -- accept | swap | reject | edit | skip
    edited_text     VARCHAR,
    lease_token     VARCHAR NOT NULL UNIQUE,        -- one decision per lease: a resubmit is not counted twice
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS annotations_pair_idx ON annotations (pair_id);

-- SFT examples: thumbs-up answers and user edits (user-labelled), with provenance.
CREATE TABLE IF NOT EXISTS sft_examples (
    example_id    VARCHAR PRIMARY KEY,
    example_key   VARCHAR NOT NULL UNIQUE,
    source        VARCHAR NOT NULL,                 -- thumbs_up | edit
    messages      JSON NOT NULL,                    -- the conversation ending with the assistant answer
    route         VARCHAR,
    provenance    JSON NOT NULL,
    mining_run    VARCHAR,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS mining_runs (
    run_id        VARCHAR PRIMARY KEY,
    since         TIMESTAMPTZ,
    until         TIMESTAMPTZ NOT NULL,             -- watermark: the next run starts here
    stats         JSON,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS exports (
    export_id     VARCHAR PRIMARY KEY,
    path          VARCHAR NOT NULL,
    hash          VARCHAR NOT NULL,
    stats         JSON,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

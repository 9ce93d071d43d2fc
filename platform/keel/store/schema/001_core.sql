-- Core tables: API keys and the request log.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    key_hash    VARCHAR NOT NULL UNIQUE,   -- sha256 of the secret; the secret itself is never stored
    role        VARCHAR NOT NULL DEFAULT 'user',  -- user | annotator | admin
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS requests (
    request_id          VARCHAR PRIMARY KEY,
    created_at          TIMESTAMPTZ NOT NULL,
    key_id              VARCHAR,
    endpoint            VARCHAR,
    model               VARCHAR,
    checkpoint_version  VARCHAR,
    engine_url          VARCHAR,
    stream              BOOLEAN,
    messages            JSON,
    params              JSON,
    response_text       VARCHAR,
    choices             JSON,
    finish_reason       VARCHAR,
    route               VARCHAR,
    route_confidence    DOUBLE,
    retrieved           JSON,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    ttft_ms             DOUBLE,
    latency_ms          DOUBLE,
    retrieval_ms        DOUBLE,
    generation_ms       DOUBLE,
    status_code         INTEGER,
    error               VARCHAR,
    regenerate_of       VARCHAR,
    meta                JSON
);

CREATE TABLE IF NOT EXISTS checkpoints (
    version        VARCHAR PRIMARY KEY,
    path           VARCHAR NOT NULL,
    parent         VARCHAR,
    stage          VARCHAR,
    status         VARCHAR NOT NULL DEFAULT 'candidate',  -- candidate | serving | retired | rejected
    manifest       JSON,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

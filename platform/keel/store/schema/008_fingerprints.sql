-- Probe fingerprints (issue 16 build 5): what each checkpoint's weights answer to a few fixed probes
-- (serving.engine.fingerprint). Every swap and engine start checks the engine against these.
CREATE TABLE IF NOT EXISTS fingerprints (
    version      VARCHAR NOT NULL,
    dtype        VARCHAR NOT NULL,        -- the engine dtype the reference was computed in
    fingerprint  JSON NOT NULL,
    computed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version, dtype)
);

-- Issue 27: while a canary runs, each request row says which arm (champion | candidate) answered it.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS arm VARCHAR;

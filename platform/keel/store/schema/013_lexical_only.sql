-- Issue 29: a domain request answered while the dense index was incomplete retrieved with BM25 only
-- (serving.records.RouteInfo.lexical_only, also a flat column for SQL).
ALTER TABLE requests ADD COLUMN IF NOT EXISTS lexical_only BOOLEAN;

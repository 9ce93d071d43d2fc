-- Issue 25: one typed shape for what routing decided (serving.records.RouteInfo), stored whole; the flat
-- route / route_confidence / retrieved / retrieval_ms columns are derived from it for SQL.
-- Rows written before it keep their routing keys in `meta`; RequestRecord reads both.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS route_info JSON;

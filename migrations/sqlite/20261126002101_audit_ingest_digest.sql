-- The digest of what a client sent with an ingested event (`POST
-- /api/v1/audit/events`): SHA-256, hex, of its canonical content as stored.
-- A second event under the same `log_id` is a retry only if it has the same
-- tenant and digest; otherwise it is refused or recorded as a
-- `log_id_conflict` (docs/security.md). NULL for the service's own events
-- and for rows stored before this migration (which no retry can match).
-- Outside the hash chain: what it protects is the next event, not this row.
-- ADD COLUMN of a nullable column rewrites nothing (the rows are
-- append-only anyway).
ALTER TABLE audit_logs ADD COLUMN ingest_digest TEXT;

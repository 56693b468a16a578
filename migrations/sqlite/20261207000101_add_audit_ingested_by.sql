-- Which token wrote an ingested event (`POST /api/v1/audit/events`): the
-- ingest token's id, or `super_admin`. NULL for the service's own events and
-- for rows stored before this migration. In the hash chain when set (an
-- extra last field of the canonical bytes), so rows without it hash as they
-- always did and old chains still verify. A nullable column with no
-- default: no table rewrite, no backfill.
ALTER TABLE audit_logs ADD COLUMN ingested_by TEXT;

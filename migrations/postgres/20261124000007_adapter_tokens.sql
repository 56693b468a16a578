-- Adapter tokens: an ad server's integration posts delivery data for its
-- tenant's media buys, and nothing else.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_kind_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_kind_check
    CHECK (kind IN ('ingest', 'admin', 'adapter'));

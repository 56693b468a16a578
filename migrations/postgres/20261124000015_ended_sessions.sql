-- Dashboard sessions ended before their expiry (sign-out). A session cookie
-- whose id is here is refused, on every replica. A row is needed only until
-- the cookie would have expired anyway: sign-outs remove the rows past that.
CREATE TABLE ended_sessions (
    session_id TEXT PRIMARY KEY,
    -- When the session would have expired, Unix seconds.
    expires_at BIGINT NOT NULL
);
CREATE INDEX ended_sessions_expires_idx ON ended_sessions (expires_at);

-- A creative's id is the buyer's, unique per principal (it was per tenant:
-- a buyer learned of, and could squat on, another buyer's ids). An
-- assignment names the principal whose creative it is, the buy's own.
-- SQLite cannot change a primary key: both tables are rebuilt, the child
-- first dropped so the parent can go; renaming `creatives_new` rewrites the
-- new child's foreign key to `creatives`.
CREATE TABLE creatives_new (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    id              TEXT NOT NULL,
    principal_id    TEXT NOT NULL REFERENCES principals (id),
    name            TEXT NOT NULL,
    format          TEXT NOT NULL,
    url             TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending_review', 'approved', 'rejected')),
    review_reason   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, principal_id, id)
);
INSERT INTO creatives_new (tenant_id, id, principal_id, name, format, url, status,
                           review_reason, created_at, updated_at)
    SELECT tenant_id, id, principal_id, name, format, url, status,
           review_reason, created_at, updated_at FROM creatives;

CREATE TABLE creative_assignments_new (
    tenant_id       TEXT NOT NULL,
    media_buy_id    TEXT NOT NULL REFERENCES media_buys (id),
    creative_id     TEXT NOT NULL,
    principal_id    TEXT NOT NULL,
    PRIMARY KEY (media_buy_id, creative_id),
    FOREIGN KEY (tenant_id, principal_id, creative_id)
        REFERENCES creatives_new (tenant_id, principal_id, id)
);
INSERT INTO creative_assignments_new (tenant_id, media_buy_id, creative_id, principal_id)
    SELECT ca.tenant_id, ca.media_buy_id, ca.creative_id, mb.principal_id
    FROM creative_assignments ca JOIN media_buys mb ON mb.id = ca.media_buy_id;

DROP TABLE creative_assignments;
DROP TABLE creatives;
ALTER TABLE creatives_new RENAME TO creatives;
ALTER TABLE creative_assignments_new RENAME TO creative_assignments;
-- Reviews and the tenant admin's listing look creatives up by id.
CREATE INDEX creatives_tenant_id_idx ON creatives (tenant_id, id, principal_id);

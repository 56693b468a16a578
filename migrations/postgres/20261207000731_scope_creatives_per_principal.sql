-- A creative's id is the buyer's, unique per principal (it was per tenant:
-- a buyer learned of, and could squat on, another buyer's ids). An
-- assignment names the principal whose creative it is, the buy's own.
ALTER TABLE creative_assignments ADD COLUMN principal_id TEXT;
UPDATE creative_assignments ca SET principal_id = mb.principal_id
    FROM media_buys mb WHERE mb.id = ca.media_buy_id;
ALTER TABLE creative_assignments ALTER COLUMN principal_id SET NOT NULL;
ALTER TABLE creative_assignments DROP CONSTRAINT creative_assignments_tenant_id_creative_id_fkey;

ALTER TABLE creatives DROP CONSTRAINT creatives_pkey;
ALTER TABLE creatives ADD PRIMARY KEY (tenant_id, principal_id, id);
-- The primary key serves what this index served.
DROP INDEX creatives_principal_idx;
-- Reviews and the tenant admin's listing look creatives up by id.
CREATE INDEX creatives_tenant_id_idx ON creatives (tenant_id, id, principal_id);

ALTER TABLE creative_assignments ADD FOREIGN KEY (tenant_id, principal_id, creative_id)
    REFERENCES creatives (tenant_id, principal_id, id);

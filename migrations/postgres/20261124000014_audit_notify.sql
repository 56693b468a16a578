-- Every statement that appends to the trail announces the ids it wrote on the
-- `overseer_audit` channel ("<min id>:<max id>"), whoever wrote them. The
-- notification is delivered when the transaction commits, in commit order, to
-- every instance's activity hub (LISTEN), which then reads those rows.
CREATE FUNCTION overseer_audit_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    lo BIGINT;
    hi BIGINT;
BEGIN
    SELECT min(id), max(id) INTO lo, hi FROM appended;
    IF lo IS NOT NULL THEN
        PERFORM pg_notify('overseer_audit', lo::text || ':' || hi::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_logs_notify
    AFTER INSERT ON audit_logs
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION overseer_audit_notify();

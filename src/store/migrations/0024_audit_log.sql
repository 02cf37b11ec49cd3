-- The audit log (issue 18): the server's AuditEvents of reads, searches and operations are first appended
-- here, one narrow row each, by one multi-row INSERT for the requests of many (an access is on record once
-- its row commits, before its answer leaves), and later moved in bulk into resource, resource_history and the
-- search index by the drain (src/store/audit-log.ts), which any read that could see AuditEvents runs first.
-- `content` is the event's text as it will be stored (sealed under its patient's data key with encryption
-- at rest); `index_rows` the JSON array of the index statement's arrays for this one event (indexParams).
-- No index: rows are only appended and drained whole, a thousand at a time, by their physical place.

CREATE TABLE audit_log (
  id text NOT NULL,
  last_updated timestamptz NOT NULL,
  content text NOT NULL,
  index_rows text NOT NULL
);

-- Nothing appended sealed under a destroyed data key, as for resources (migration 0023). A row appended
-- while its key was still there, by a request that raced the record's erasure, is drained without its
-- content (audit-log.ts).
CREATE FUNCTION refuse_audit_log_under_destroyed_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM data_key WHERE key_id = substr(NEW.content, 5, 36)::uuid) THEN
    RAISE EXCEPTION 'data key % was destroyed: AuditEvent/% is not sealed under it', substr(NEW.content, 5, 36), NEW.id
      USING ERRCODE = 'DK001';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_sealed_under_live_key
  BEFORE INSERT OR UPDATE OF content ON audit_log
  FOR EACH ROW WHEN (left(NEW.content, 1) = '$')
  EXECUTE FUNCTION refuse_audit_log_under_destroyed_key();

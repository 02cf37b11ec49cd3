-- The audit trail is append-only (issue 18): an AuditEvent, once written, is neither changed nor removed,
-- whatever the API allows or a bug or an operator attempts. Its rows in resource and resource_history
-- refuse UPDATE and DELETE. The WHEN clause keeps every other row's writes free of the function call.
-- Its index rows are left alone: they are derived from the stored text and `npm run reindex` rebuilds them.

CREATE FUNCTION refuse_audit_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'AuditEvent %/% is append-only: % refused', OLD.resource_type, OLD.id, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER resource_audit_event_append_only
  BEFORE UPDATE OR DELETE ON resource
  FOR EACH ROW WHEN (OLD.resource_type = 'AuditEvent')
  EXECUTE FUNCTION refuse_audit_event_change();

CREATE TRIGGER resource_history_audit_event_append_only
  BEFORE UPDATE OR DELETE ON resource_history
  FOR EACH ROW WHEN (OLD.resource_type = 'AuditEvent')
  EXECUTE FUNCTION refuse_audit_event_change();

-- The audit log's row (an event's text and its index rows, ~3.5 KB) is over PostgreSQL's 2 KB threshold, so
-- every append compresses it, and the drain copies `content` into resource and resource_history compressed
-- as it was. With pglz, the default, the append paid pglz's price per event and the AuditEvents' stored text
-- was pglz although those columns are lz4 (migration 0010). lz4 compresses several times faster for a ratio
-- close enough at these sizes (scripts/bench/results/audit-cost.md). PGlite is built without lz4 and keeps pglz.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE audit_log ALTER COLUMN content SET COMPRESSION lz4;
    ALTER TABLE audit_log ALTER COLUMN index_rows SET COMPRESSION lz4;
  END IF;
END
$$;

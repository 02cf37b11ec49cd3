-- A resource's JSON is stored twice (current row and history row), and a document's, with its PDF inline,
-- is long enough to be compressed each time. pglz, the default, made those two inserts the slowest part of
-- a transaction bundle's statement: with lz4, a bundle of 36 resources (7 documents of 2-6 KB) took
-- 9.3 ms instead of 11.9 ms in PostgreSQL. Values already stored keep their compression; both read the same.
-- PGlite is built without lz4 and keeps pglz.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
    ALTER TABLE resource ALTER COLUMN content SET COMPRESSION lz4;
    ALTER TABLE resource_history ALTER COLUMN content SET COMPRESSION lz4;
  END IF;
END
$$;

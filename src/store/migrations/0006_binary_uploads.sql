-- A streamed upload writes its chunks before the transaction that writes the Binary's version, each
-- in a short statement of its own, so a slow sender holds no transaction, pooled connection or row lock
-- while the bytes arrive (PGlite, which runs one transaction at a time, kept every other writer waiting).
-- Chunks are therefore keyed by a content id of their own; binary_content ties a version to its content
-- once that version is written. An upload not yet tied to a version is listed in binary_upload: what a
-- failed or interrupted upload leaves behind is removed by its id, or at start when it is old.

ALTER TABLE binary_content ADD COLUMN content_id text;
UPDATE binary_content SET content_id = binary_id || '/_history/' || version_id;
ALTER TABLE binary_content ALTER COLUMN content_id SET NOT NULL;

ALTER TABLE binary_chunk ADD COLUMN content_id text;
UPDATE binary_chunk SET content_id = binary_id || '/_history/' || version_id;
ALTER TABLE binary_chunk DROP CONSTRAINT binary_chunk_pkey;
ALTER TABLE binary_chunk DROP COLUMN binary_id;
ALTER TABLE binary_chunk DROP COLUMN version_id;
ALTER TABLE binary_chunk ALTER COLUMN content_id SET NOT NULL;
ALTER TABLE binary_chunk ADD PRIMARY KEY (content_id, chunk_no);

CREATE TABLE binary_upload (
  content_id text        PRIMARY KEY,
  started    timestamptz NOT NULL DEFAULT now()
);

-- A Binary's bytes, out of line: the resource's JSON (resource.content, resource_history.content) is the
-- Binary without `data`, and each version that has content gets one binary_content row (its size and
-- SHA-1, so downloads and attachment checks know them without reading the bytes) and its bytes in
-- binary_chunk rows, so that uploads and downloads go chunk by chunk instead of holding a whole document
-- in memory. Rows are never updated: a version's bytes stay as written, for vread, after later versions
-- and deletion alike. Binaries written before this migration keep their base64 `data` inline.

CREATE TABLE binary_content (
  binary_id   text    NOT NULL,
  version_id  integer NOT NULL,
  size        bigint  NOT NULL,
  sha1        text    NOT NULL,            -- base64, as Attachment.hash holds it
  chunk_count integer NOT NULL,
  PRIMARY KEY (binary_id, version_id)
);

CREATE TABLE binary_chunk (
  binary_id  text    NOT NULL,
  version_id integer NOT NULL,
  chunk_no   integer NOT NULL,             -- from 0, in the order of the bytes
  bytes      bytea   NOT NULL,
  PRIMARY KEY (binary_id, version_id, chunk_no)
);

-- Every version of every resource, and the current version of each resource findable by primary key.
-- Content is stored as the JSON text the server produced (not jsonb): reads send it back untouched,
-- key order is kept, and per-patient encryption can later replace the text without a schema change.

CREATE TABLE resource (
  resource_type text        NOT NULL,
  id            text        NOT NULL,
  version_id    integer     NOT NULL,
  last_updated  timestamptz NOT NULL,
  deleted       boolean     NOT NULL DEFAULT false,
  content       text,                       -- NULL once deleted
  PRIMARY KEY (resource_type, id)
);

CREATE TABLE resource_history (
  seq           bigint      GENERATED ALWAYS AS IDENTITY,
  resource_type text        NOT NULL,
  id            text        NOT NULL,
  version_id    integer     NOT NULL,
  last_updated  timestamptz NOT NULL,
  method        text        NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE', 'PATCH')),
  content       text,                       -- NULL for a deletion
  PRIMARY KEY (resource_type, id, version_id)
);

-- History is listed newest first by seq (assigned at write): the system, type and instance levels
-- each page through one index without OFFSET.
CREATE UNIQUE INDEX resource_history_seq ON resource_history (seq);
CREATE INDEX resource_history_type_seq ON resource_history (resource_type, seq);
CREATE INDEX resource_history_instance_seq ON resource_history (resource_type, id, seq);

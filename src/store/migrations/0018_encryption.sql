-- Encryption at rest (src/store/encryption.ts). Each patient's record has its data key (`owner` 'Patient/{id}'),
-- what belongs to no patient the system's ('system'); a key is stored wrapped by the master key `master_key_id`
-- names, so that rotating the master key rewraps these rows and nothing else. An owner may have more than one
-- key (two writers creating its first at once): the oldest seals, each opens what it sealed. Erasing a record
-- deletes its owner's rows, which leaves everything sealed under them unreadable.
CREATE TABLE data_key (
  key_id        uuid        PRIMARY KEY,
  owner         text        NOT NULL,
  master_key_id text        NOT NULL,
  wrapped       text        NOT NULL,  -- base64: nonce, tag and the AES-256-GCM-wrapped key
  created       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_key_owner ON data_key (owner, created);

-- The data key a chunk's bytes are sealed with; NULL for bytes written in clear (before encryption, or with it off).
ALTER TABLE binary_chunk ADD COLUMN key_id uuid;

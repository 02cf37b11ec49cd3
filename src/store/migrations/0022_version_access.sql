-- Each stored version's own compartment membership and visibility labels (issues 15/17/18): vread and
-- `_history` judge a version by what it was, not by what the resource is now, so an Observation moved from
-- Patient/A to Patient/B keeps its first version in A's record, and a document masked once stays masked in
-- that version when a later one drops the label. Written with the index rows, in the write's own statement,
-- from the rows it writes to compartment_member and resource_visibility (src/store/version-rows.ts); a
-- deletion's version copies the rows of the version it deleted. Existing versions are filled by a step in
-- TypeScript (src/store/migration-steps.ts), which extracts them from each version's content as a write does.

-- A version's compartments (compartment_member's rows at that version). Not a unique key: a reindex rewrites
-- the current version's rows in one statement that deletes and inserts them (as compartment_member).
CREATE TABLE version_member (
  resource_type    text    NOT NULL,
  resource_id      text    NOT NULL,
  version_id       integer NOT NULL,
  compartment_type text    NOT NULL,
  compartment_id   text    NOT NULL
);
CREATE INDEX version_member_version ON version_member (resource_type, resource_id, version_id, compartment_type, compartment_id);

-- A labelled version's visibility (resource_visibility's row at that version; none when it was not labelled).
CREATE TABLE version_visibility (
  resource_type       text    NOT NULL,
  resource_id         text    NOT NULL,
  version_id          integer NOT NULL,
  patient_id          text,
  masked              boolean NOT NULL,
  hidden_from_patient boolean NOT NULL,
  authors             text[]  NOT NULL,
  sent_by             text
);
CREATE INDEX version_visibility_version ON version_visibility (resource_type, resource_id, version_id);

/**
 * Each version's own compartment membership and visibility label (migration 0022), kept so that vread and
 * `_history` judge a version by what it was rather than by what its resource is now (access-scope.ts,
 * consent-scope.ts with `versioned`). They are the rows the write puts in compartment_member and
 * resource_visibility, stamped with the version, inserted by the same statement from what those inserts
 * return: no parameter and no round trip more. A write costs one version_member row per compartment its
 * version is in and, when labelled, one version_visibility row.
 */

/** The version a rewrite statement (`$1` type, `$2` id) writes rows for: the resource row is already at it. */
export const CURRENT_VERSION = `(SELECT version_id FROM resource WHERE resource_type = $1 AND id = $2)`;

/**
 * CTEs stamping the rows `i_compartment` and `i_visibility` insert (both `RETURNING` their rows) with
 * `version`, a SQL expression: `1` for first versions, CURRENT_VERSION in a rewrite.
 */
export function versionInsertCtes(version: string): string[] {
  return [
    `i_version_member AS (INSERT INTO version_member (resource_type, resource_id, version_id, compartment_type, compartment_id) ` +
      `SELECT resource_type, resource_id, ${version}, compartment_type, compartment_id FROM i_compartment)`,
    `i_version_visibility AS (INSERT INTO version_visibility (resource_type, resource_id, version_id, patient_id, masked, hidden_from_patient, authors, sent_by) ` +
      `SELECT resource_type, resource_id, ${version}, patient_id, masked, hidden_from_patient, authors, sent_by FROM i_visibility)`,
  ];
}

/**
 * CTEs removing the rows of the version a rewrite statement writes (`$1`/`$2`), before versionInsertCtes:
 * none for a new version, the old ones when a reindex rewrites the current version's rows.
 */
export const VERSION_DELETE_CTES = [
  `d_version_member AS (DELETE FROM version_member WHERE resource_type = $1 AND resource_id = $2 AND version_id = ${CURRENT_VERSION})`,
  `d_version_visibility AS (DELETE FROM version_visibility WHERE resource_type = $1 AND resource_id = $2 AND version_id = ${CURRENT_VERSION})`,
];

/**
 * A deletion's CTEs (`$1`/`$2`, the resource row already at the deletion's version): the deletion's version
 * is seen as the version it deleted was, in the same compartments and under the same label, so its entry in
 * the history is shown exactly to those who saw the resource last.
 */
export const VERSION_DELETION_CTES = [
  `i_version_member AS (INSERT INTO version_member (resource_type, resource_id, version_id, compartment_type, compartment_id)
      SELECT m.resource_type, m.resource_id, m.version_id + 1, m.compartment_type, m.compartment_id FROM version_member m
       WHERE m.resource_type = $1 AND m.resource_id = $2 AND m.version_id = ${CURRENT_VERSION} - 1)`,
  `i_version_visibility AS (INSERT INTO version_visibility (resource_type, resource_id, version_id, patient_id, masked, hidden_from_patient, authors, sent_by)
      SELECT v.resource_type, v.resource_id, v.version_id + 1, v.patient_id, v.masked, v.hidden_from_patient, v.authors, v.sent_by FROM version_visibility v
       WHERE v.resource_type = $1 AND v.resource_id = $2 AND v.version_id = ${CURRENT_VERSION} - 1)`,
];

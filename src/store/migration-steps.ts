import { COMPARTMENT_TYPES, compartmentParams, membersOf, recordPatientParams } from '../search/compartment.ts';
import type { Resource } from 'fhir/r4';
import { emptyRows, extractIndexRows } from '../search/extract.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../search/registry.ts';
import type { SqlExecutor } from './database.ts';
import { consentInsertCtes, consentParams, paramRows, consentRowsOf, INVISIBLE_TO_PATIENT, MASKED_FROM_PROFESSIONALS } from './consent-rows.ts';

/**
 * Steps run after a migration's SQL, in its transaction, for what the SQL cannot say without copying data
 * the server reads from definitions: keyed by migration version.
 */
export const MIGRATION_STEPS: Readonly<Record<number, (tx: SqlExecutor) => Promise<void>>> = {
  12: backfillCompartments,
  17: backfillConsent,
  22: backfillVersionAccess,
};

const INDEX_TABLES = ['token', 'string', 'date', 'reference', 'uri', 'number', 'quantity', 'composite'];

/**
 * Migration 0012 on a store that has data: the compartment memberships and record patients of the
 * resources already stored, from their reference index rows, by the same parameters the writer uses
 * (compartmentParams, recordPatientParams), passed as arrays rather than written into the SQL.
 */
export async function backfillCompartments(tx: SqlExecutor): Promise<void> {
  const triples = compartmentParams();
  await tx.query(
    `INSERT INTO compartment_member (compartment_type, compartment_id, resource_type, resource_id)
     SELECT c.compartment_type, o.target_id, o.resource_type, o.resource_id
       FROM search_reference o
       JOIN unnest($1::text[], $2::text[], $3::text[]) AS c(compartment_type, resource_type, param)
         ON o.resource_type = c.resource_type AND o.param = c.param AND o.target_type = c.compartment_type
      WHERE o.target_id IS NOT NULL
     UNION
     SELECT resource_type, id, resource_type, id FROM resource WHERE resource_type = ANY($4::text[]) AND NOT deleted`,
    [triples.map((t) => t[0]), triples.map((t) => t[1]), triples.map((t) => t[2]), [...COMPARTMENT_TYPES]],
  );
  const pairs = [...recordPatientParams()];
  // One patient per record, or none, as recordPatientOf at write time (0008 used the name record_patient in the same transaction).
  await tx.query(
    `CREATE TEMPORARY TABLE record_patient_0012 ON COMMIT DROP AS
     SELECT o.resource_type, o.resource_id, min(o.target_id) AS patient_id
       FROM search_reference o
       JOIN unnest($1::text[], $2::text[]) AS p(resource_type, param) ON o.resource_type = p.resource_type AND o.param = p.param
      WHERE o.target_type = 'Patient' AND o.target_id IS NOT NULL
      GROUP BY o.resource_type, o.resource_id
     HAVING count(DISTINCT o.target_id) = 1
     UNION ALL
     SELECT 'Patient', id, id FROM resource WHERE resource_type = 'Patient' AND NOT deleted`,
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
  );
  await tx.query('CREATE INDEX ON record_patient_0012 (resource_type, resource_id)');
  await tx.query('ANALYZE record_patient_0012');
  for (const table of INDEX_TABLES) {
    await tx.query(
      `UPDATE search_${table} t SET patient_id = p.patient_id FROM record_patient_0012 p
        WHERE t.resource_type = p.resource_type AND t.resource_id = p.resource_id AND t.patient_id IS DISTINCT FROM p.patient_id`,
    );
    await tx.query(
      `UPDATE search_${table} t SET patient_id = NULL
        WHERE t.patient_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM record_patient_0012 p WHERE p.resource_type = t.resource_type AND p.resource_id = t.resource_id)`,
    );
  }
}

/**
 * Migration 0017 on a store that has data: the consent rows (consent-rows.ts) of the Consents, Binaries and
 * labelled resources already stored, computed as a write computes them, from their content and their reference
 * index rows, in batches. The client that sent a labelled resource is not known: no system client sees it as its
 * own (a professional's update keeps it so).
 */
export async function backfillConsent(tx: SqlExecutor): Promise<void> {
  const { rows: labelled } = await tx.query<{ resource_type: string; resource_id: string }>(
    `SELECT DISTINCT resource_type, resource_id FROM search_token WHERE param IN ('_security', 'security-label') AND code = ANY($1::text[])`,
    [[MASKED_FROM_PROFESSIONALS, INVISIBLE_TO_PATIENT]],
  );
  const { rows: others } = await tx.query<{ resource_type: string; resource_id: string }>(
    `SELECT resource_type, id AS resource_id FROM resource WHERE resource_type IN ('Consent', 'Binary') AND NOT deleted`,
  );
  const keys = [...new Map([...labelled, ...others].map((row) => [`${row.resource_type}/${row.resource_id}`, row])).values()];
  for (let start = 0; start < keys.length; start += 500) {
    const batch = keys.slice(start, start + 500);
    const types = batch.map((row) => row.resource_type);
    const ids = batch.map((row) => row.resource_id);
    const { rows: resources } = await tx.query<{ resource_type: string; id: string; content: string }>(
      `SELECT resource_type, id, content FROM resource WHERE (resource_type, id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND NOT deleted`,
      [types, ids],
    );
    const { rows: references } = await tx.query<{ resource_type: string; resource_id: string; param: string; target_type: string | null; target_id: string | null }>(
      `SELECT resource_type, resource_id, param, target_type, target_id FROM search_reference WHERE (resource_type, resource_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [types, ids],
    );
    const written = resources.map((row) => {
      const rows = emptyRows();
      rows.reference = references
        .filter((ref) => ref.resource_type === row.resource_type && ref.resource_id === row.id)
        .map((ref) => ({ param: ref.param, targetType: ref.target_type, targetId: ref.target_id, url: null, identifierSystem: null, identifierValue: null }));
      return { resourceType: row.resource_type, id: row.id, consent: consentRowsOf(JSON.parse(row.content) as Resource, rows) };
    });
    await tx.query(`WITH ${consentInsertCtes(paramRows(1), false).join(',\n')} SELECT 1`, consentParams(written));
  }
}

/** Stored versions read per batch by the backfill of migration 0022. */
const VERSION_BATCH = 500;

/**
 * Migration 0022 on a store that has data: every stored version's compartments and visibility label
 * (version_member, version_visibility), computed from its own content as a write computes them (its reference
 * index rows, extracted now: membersOf, consentRowsOf), in batches in history key order. A labelled version
 * remembers the client that labelled its resource, when known; a deletion's version gets the rows of the
 * version it deleted. Absolute references to the server's own base (not known here) are not taken for
 * local ones: as `npm run reindex` without `--base-url`.
 */
export async function backfillVersionAccess(tx: SqlExecutor): Promise<void> {
  // Membership and labels need a version's reference rows only: no other parameter is evaluated.
  const registry = new SearchParameterRegistry(loadSearchParameters().filter((definition) => definition.type === 'reference'));
  let after: [string, string, number] = ['', '', 0];
  for (;;) {
    const { rows } = await tx.query<{ resource_type: string; id: string; version_id: number; content: string }>(
      `SELECT resource_type, id, version_id, content FROM resource_history
        WHERE content IS NOT NULL AND (resource_type, id, version_id) > ($1, $2, $3::int)
        ORDER BY resource_type, id, version_id LIMIT $4::int`,
      [...after, VERSION_BATCH],
    );
    if (rows.length === 0) break;
    const members: unknown[][] = [];
    const labels: unknown[][] = [];
    for (const row of rows) {
      const resource = JSON.parse(row.content) as Resource;
      const references = extractIndexRows(resource, registry).reference;
      for (const [type, id] of membersOf(row.resource_type, row.id, references)) members.push([row.resource_type, row.id, row.version_id, type, id]);
      const indexRows = { ...emptyRows(), reference: references };
      const { label } = consentRowsOf({ ...resource, id: row.id }, indexRows);
      if (label) labels.push([row.resource_type, row.id, row.version_id, label.patientId, label.masked, label.hiddenFromPatient, label.authors]);
    }
    await tx.query(
      `WITH m AS (INSERT INTO version_member (resource_type, resource_id, version_id, compartment_type, compartment_id)
                  SELECT x->>0, x->>1, (x->>2)::int, x->>3, x->>4 FROM jsonb_array_elements($1::jsonb) AS x)
       INSERT INTO version_visibility (resource_type, resource_id, version_id, patient_id, masked, hidden_from_patient, authors, sent_by)
       SELECT x->>0, x->>1, (x->>2)::int, x->>3, (x->>4)::boolean, (x->>5)::boolean, ARRAY(SELECT jsonb_array_elements_text(x->6)),
              (SELECT o.sent_by FROM resource_visibility o WHERE o.resource_type = x->>0 AND o.resource_id = x->>1 AND o.sent_by IS NOT NULL LIMIT 1)
         FROM jsonb_array_elements($2::jsonb) AS x`,
      [JSON.stringify(members), JSON.stringify(labels)],
    );
    const last = rows[rows.length - 1]!;
    after = [last.resource_type, last.id, last.version_id];
  }
  // A resource is never deleted twice in a row: the version before a deletion has content, and rows now.
  await tx.query(
    `INSERT INTO version_member (resource_type, resource_id, version_id, compartment_type, compartment_id)
     SELECT m.resource_type, m.resource_id, h.version_id, m.compartment_type, m.compartment_id
       FROM resource_history h JOIN version_member m ON m.resource_type = h.resource_type AND m.resource_id = h.id AND m.version_id = h.version_id - 1
      WHERE h.content IS NULL`,
  );
  await tx.query(
    `INSERT INTO version_visibility (resource_type, resource_id, version_id, patient_id, masked, hidden_from_patient, authors, sent_by)
     SELECT v.resource_type, v.resource_id, h.version_id, v.patient_id, v.masked, v.hidden_from_patient, v.authors, v.sent_by
       FROM resource_history h JOIN version_visibility v ON v.resource_type = h.resource_type AND v.resource_id = h.id AND v.version_id = h.version_id - 1
      WHERE h.content IS NULL`,
  );
}

import { COMPARTMENT_TYPES, compartmentParams, recordPatientParams } from '../search/compartment.ts';
import type { SqlExecutor } from './database.ts';

/**
 * Steps run after a migration's SQL, in its transaction, for what the SQL cannot say without copying data
 * the server reads from definitions: keyed by migration version.
 */
export const MIGRATION_STEPS: Readonly<Record<number, (tx: SqlExecutor) => Promise<void>>> = {
  12: backfillCompartments,
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

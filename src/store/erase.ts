import { FhirError } from '../fhir/outcome.ts';
import { forgetPatientAuthorizations } from './authorization.ts';
import type { Database, SqlExecutor } from './database.ts';
import { DESTROYED_KEYS_CHANNEL, type DataKeys } from './encryption.ts';

/** What erasing a patient's record removed. */
export interface ErasedRecord {
  /** Resources whose current row and history went (the patient, its record's members, their Binaries). */
  resources: number;
  /** AuditEvents about the patient, kept (the trail is append-only) but left unreadable: their data key is gone. */
  auditEvents: number;
  /** Data keys destroyed. */
  dataKeys: number;
  /** Records of the embedded authorization server forgotten (the patient's sessions, approvals, grants, refresh tokens, launches). */
  authorizations: number;
}

const INDEX_TABLES = ['token', 'string', 'date', 'reference', 'uri', 'number', 'quantity', 'composite', 'position'].map((table) => `search_${table}`);

/** Every table an erasure deletes rows from: vacuumed afterwards, so that the rows' bytes leave the table files too. */
const TOUCHED_TABLES = [
  'resource',
  'resource_history',
  ...INDEX_TABLES,
  'compartment_member',
  'version_member',
  'consent_rule',
  'resource_visibility',
  'version_visibility',
  'binary_context',
  'binary_content',
  'binary_chunk',
  'data_key',
  'authz_account',
  'authz_record',
];

const TARGETS = `SELECT * FROM unnest($2::text[], $3::text[])`;

/**
 * Closes a patient's record for good (`Patient/{id}/$erase`): in one transaction, deletes the patient, the
 * members of its compartment (the deleted ones too, known by their tombstones) and the Binaries whose
 * securityContext is one of them, with their history, Binary bytes, index rows, compartment memberships
 * and consent rows, and destroys the record's data keys. AuditEvents cannot be deleted (migration 0016):
 * those about this patient alone were sealed under its key, so they stay as unreadable ciphertext, and
 * their index rows go. Then, outside the transaction, the touched tables are vacuumed so that the deleted
 * rows do not linger in the table files (on PGlite VACUUM FULL, which rewrites them, and the write-ahead
 * log is switched past them and checkpointed with recycling off, so that its old segments are removed).
 */
export async function eraseRecord(db: Database, patientId: string, keys: DataKeys | undefined, drainAuditLog: (tx: SqlExecutor) => Promise<void>): Promise<ErasedRecord> {
  const owner = `Patient/${patientId}`;
  const erased = await db.transaction(async (tx) => {
    // Its AuditEvents still in the audit log become stored ones first, then go as the stored ones do; the
    // drain lock, held to the commit, keeps other drains from storing events under keys this destroys.
    await drainAuditLog(tx);
    const { rows: patient } = await tx.query(`SELECT 1 FROM resource WHERE resource_type = 'Patient' AND id = $1 FOR UPDATE`, [patientId]);
    const { rows: ownKeys } = await tx.query(`SELECT 1 FROM data_key WHERE owner = $1`, [owner]);
    if (patient.length === 0 && ownKeys.length === 0) throw FhirError.notFound(`Patient/${patientId} is not known`);
    const { rows: members } = await tx.query<{ resource_type: string; resource_id: string }>(
      `SELECT resource_type, resource_id FROM compartment_member WHERE compartment_type = 'Patient' AND compartment_id = $1
       UNION SELECT resource_type, resource_id FROM resource_visibility WHERE patient_id = $1
       UNION SELECT resource_type, resource_id FROM search_token WHERE patient_id = $1
       UNION SELECT 'Patient', $1`,
      [patientId],
    );
    const { rows: binaries } = await tx.query<{ binary_id: string }>(
      `SELECT DISTINCT binary_id FROM binary_context WHERE (context_type, context_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [members.map((m) => m.resource_type), members.map((m) => m.resource_id)],
    );
    const targets = [...members.map((m) => [m.resource_type, m.resource_id] as const), ...binaries.map((b) => ['Binary', b.binary_id] as const)];
    const params = [patientId, targets.map(([type]) => type), targets.map(([, id]) => id)];
    const binaryIds = binaries.map((b) => b.binary_id);
    const deleted = await tx.query(`DELETE FROM resource WHERE (resource_type, id) IN (${TARGETS}) AND resource_type <> 'AuditEvent' AND $1::text IS NOT NULL`, params);
    await tx.query(`DELETE FROM resource_history WHERE (resource_type, id) IN (${TARGETS}) AND resource_type <> 'AuditEvent' AND $1::text IS NOT NULL`, params);
    const { rows: audit } = await tx.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM resource WHERE resource_type = 'AuditEvent' AND id IN (SELECT id FROM unnest($2::text[], $3::text[]) AS t(type, id) WHERE type = 'AuditEvent') AND $1::text IS NOT NULL`,
      params,
    );
    for (const table of INDEX_TABLES) {
      const references = table === 'search_reference' ? ` OR (target_type = 'Patient' AND target_id = $1)` : '';
      await tx.query(`DELETE FROM ${table} WHERE (resource_type, resource_id) IN (${TARGETS}) OR patient_id = $1${references}`, params);
    }
    await tx.query(`DELETE FROM compartment_member WHERE (compartment_type = 'Patient' AND compartment_id = $1) OR (resource_type, resource_id) IN (${TARGETS})`, params);
    // Every version's own compartments and label (migration 0022), the patient's own among them.
    await tx.query(`DELETE FROM version_member WHERE (compartment_type = 'Patient' AND compartment_id = $1) OR (resource_type, resource_id) IN (${TARGETS})`, params);
    await tx.query(`DELETE FROM version_visibility WHERE patient_id = $1 OR (resource_type, resource_id) IN (${TARGETS})`, params);
    await tx.query(`DELETE FROM consent_rule WHERE patient_id = $1 OR consent_id IN (SELECT id FROM unnest($2::text[], $3::text[]) AS t(type, id) WHERE type = 'Consent')`, params);
    await tx.query(`DELETE FROM resource_visibility WHERE patient_id = $1 OR (resource_type, resource_id) IN (${TARGETS})`, params);
    await tx.query(`DELETE FROM binary_context WHERE binary_id = ANY($4::text[]) OR (context_type, context_id) IN (${TARGETS}) OR (context_type = 'Patient' AND context_id = $1)`, [...params, binaryIds]);
    await tx.query(`DELETE FROM binary_chunk WHERE content_id IN (SELECT content_id FROM binary_content WHERE binary_id = ANY($1::text[]))`, [binaryIds]);
    await tx.query(`DELETE FROM binary_content WHERE binary_id = ANY($1::text[])`, [binaryIds]);
    // The patient's own login accounts (the embedded authorization server's): their user names are often their names.
    const { rows: accounts } = await tx.query<{ username: string }>(`DELETE FROM authz_account WHERE patient IN ($1, $2) OR fhir_user = $2 RETURNING username`, [patientId, owner]);
    // And what the authorization server remembers of them and of the patient: approvals, grants, refresh tokens, launches.
    const authorizations = await forgetPatientAuthorizations(tx, patientId, accounts.map((account) => account.username));
    const destroyed = await tx.query(`DELETE FROM data_key WHERE owner = $1`, [owner]);
    // Heard by every server process on the database as this commits: they forget the keys (listenForDestroyedKeys).
    await tx.query(`SELECT pg_notify($1, $2)`, [DESTROYED_KEYS_CHANNEL, owner]);
    return { resources: deleted.rowCount, auditEvents: audit[0]?.n ?? 0, dataKeys: destroyed.rowCount, authorizations };
  });
  keys?.forget(owner);
  await vacuum(db);
  return erased;
}

/** Removes the deleted rows' bytes from the table files (and, on PGlite, the write-ahead log's old segments). */
async function vacuum(db: Database): Promise<void> {
  if (db.driver !== 'pglite') {
    // PostgreSQL: dead rows pruned without locking out the other servers; VACUUM FULL, backups and WAL archives are the operator's (README).
    await db.exec(`VACUUM ${TOUCHED_TABLES.join(', ')}`);
    return;
  }
  await db.exec(`VACUUM FULL ${TOUCHED_TABLES.join(', ')}`);
  await db.exec(`SET wal_recycle = off`);
  try {
    for (let round = 0; round < 2; round++) {
      await db.query('SELECT pg_switch_wal()');
      await db.exec('CHECKPOINT');
    }
  } finally {
    await db.exec('RESET wal_recycle');
  }
}

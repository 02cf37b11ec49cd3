import type { Database, SqlExecutor } from './database.ts';

/** A client of the embedded authorization server, as `npm run client` registers it. */
export interface AuthorizationClient {
  clientId: string;
  /** Its OAuth client metadata (RFC 7591 names: `jwks`, `jwks_uri`, `redirect_uris`, `grant_types`…). */
  metadata: Record<string, unknown>;
  /** The SMART scopes its tokens may carry at most, space-separated (`system/*.cruds`, `patient/*.rs`). */
  allowedScopes: string;
}

/** A local account of the login page; its password only as a hash (src/security/passwords.ts). */
export interface LocalAccount {
  username: string;
  passwordHash: string;
  /** The FHIR resource the user is (`Practitioner/7`, `Patient/123`). */
  fhirUser?: string;
  /** The patient of a standalone launch by this user (a patient's own record). */
  patient?: string;
}

/** One thing the authorization server keeps for a while: a session, a code, a grant, a launch context… */
export interface AuthorizationRecord {
  payload: Record<string, unknown>;
  /** Seconds since the epoch, when the record may be forgotten. */
  expiresAt?: number;
  consumed: boolean;
}

/**
 * The authorization server's storage: its clients, its local accounts, and the records of its OAuth
 * library (one table, keyed by model and id, as oidc-provider's adapter interface asks).
 */
export interface AuthorizationStore {
  saveClient(client: AuthorizationClient): Promise<void>;
  client(clientId: string): Promise<AuthorizationClient | undefined>;
  removeClient(clientId: string): Promise<boolean>;
  saveAccount(account: LocalAccount): Promise<void>;
  account(username: string): Promise<LocalAccount | undefined>;
  /** Keeps `payload` under (model, id) for `expiresIn` seconds (for ever without). */
  saveRecord(model: string, id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void>;
  /** The unexpired record, if any. */
  record(model: string, id: string): Promise<AuthorizationRecord | undefined>;
  recordByUid(model: string, uid: string): Promise<AuthorizationRecord | undefined>;
  recordByUserCode(model: string, userCode: string): Promise<AuthorizationRecord | undefined>;
  /** Marks the record used (an authorization code, a refresh token); false if it was already. */
  consumeRecord(model: string, id: string): Promise<boolean>;
  removeRecord(model: string, id: string): Promise<void>;
  /** Removes every record of a grant (its codes, tokens, the grant itself): a revocation. */
  removeGrant(grantId: string): Promise<void>;
  /** Forgets expired records; returns how many. */
  sweepExpiredRecords(): Promise<number>;
}

/** The authorization server's storage on the store's database. */
export function authorizationStore(db: Database): AuthorizationStore {
  return new SqlAuthorizationStore(db);
}

/**
 * Forgets, on the erasure's transaction (erase.ts), what the authorization server keeps about a patient whose
 * record is closed: every record of the patient's own accounts (`accounts`: sessions, interactions, approvals,
 * grants, codes, refresh tokens), every grant whose launch context is the patient, with its codes and refresh
 * tokens (which then stop working), and the pending launches and picker choices naming the patient. Records are
 * found by what their payload names, whatever their model: a launch context names the patient by id, a picker
 * choice and a user by reference. Returns how many records went.
 */
export async function forgetPatientAuthorizations(db: SqlExecutor, patientId: string, accounts: readonly string[]): Promise<number> {
  const { rowCount } = await db.query(
    `WITH named AS (
       SELECT model, id, grant_id FROM authz_record
        WHERE payload->>'accountId' = ANY($3::text[]) OR payload->'session'->>'accountId' = ANY($3::text[])
           OR payload->'result'->'login'->>'accountId' = ANY($3::text[])
           OR payload->>'patient' IN ($1, $2) OR payload->>'fhirUser' = $2
     ), grants AS (
       SELECT grant_id FROM named WHERE grant_id IS NOT NULL UNION SELECT id FROM named WHERE model = 'Grant'
     )
     DELETE FROM authz_record
      WHERE (model, id) IN (SELECT model, id FROM named) OR grant_id IN (SELECT grant_id FROM grants)
         OR (model = 'Grant' AND id IN (SELECT grant_id FROM grants))`,
    [patientId, `Patient/${patientId}`, [...accounts]],
  );
  return rowCount;
}

interface RecordRow {
  payload: unknown;
  expires_at: Date | string | null;
  consumed_at: Date | string | null;
}

const RECORD_COLUMNS = 'payload, expires_at, consumed_at';
const UNEXPIRED = '(expires_at IS NULL OR expires_at > now())';

class SqlAuthorizationStore implements AuthorizationStore {
  constructor(private readonly db: SqlExecutor) {}

  async saveClient(client: AuthorizationClient): Promise<void> {
    await this.db.query(
      `INSERT INTO authz_client (client_id, metadata, allowed_scopes) VALUES ($1, $2, $3)
        ON CONFLICT (client_id) DO UPDATE SET metadata = EXCLUDED.metadata, allowed_scopes = EXCLUDED.allowed_scopes`,
      [client.clientId, JSON.stringify(client.metadata), client.allowedScopes],
    );
  }

  async client(clientId: string): Promise<AuthorizationClient | undefined> {
    const { rows } = await this.db.query<{ client_id: string; metadata: unknown; allowed_scopes: string }>(
      'SELECT client_id, metadata, allowed_scopes FROM authz_client WHERE client_id = $1',
      [clientId],
    );
    const row = rows[0];
    return row ? { clientId: row.client_id, metadata: json(row.metadata), allowedScopes: row.allowed_scopes } : undefined;
  }

  async removeClient(clientId: string): Promise<boolean> {
    const { rowCount } = await this.db.query('DELETE FROM authz_client WHERE client_id = $1', [clientId]);
    return rowCount > 0;
  }

  async saveAccount(account: LocalAccount): Promise<void> {
    await this.db.query(
      `INSERT INTO authz_account (username, password_hash, fhir_user, patient) VALUES ($1, $2, $3, $4)
        ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, fhir_user = EXCLUDED.fhir_user, patient = EXCLUDED.patient`,
      [account.username, account.passwordHash, account.fhirUser ?? null, account.patient ?? null],
    );
  }

  async account(username: string): Promise<LocalAccount | undefined> {
    const { rows } = await this.db.query<{ username: string; password_hash: string; fhir_user: string | null; patient: string | null }>(
      'SELECT username, password_hash, fhir_user, patient FROM authz_account WHERE username = $1',
      [username],
    );
    const row = rows[0];
    if (!row) return undefined;
    return { username: row.username, passwordHash: row.password_hash, ...(row.fhir_user ? { fhirUser: row.fhir_user } : {}), ...(row.patient ? { patient: row.patient } : {}) };
  }

  async saveRecord(model: string, id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
    const text = (value: unknown) => (typeof value === 'string' ? value : null);
    await this.db.query(
      `INSERT INTO authz_record (model, id, payload, grant_id, uid, user_code, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::integer IS NULL THEN NULL ELSE now() + make_interval(secs => $7::integer) END)
        ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid,
          user_code = EXCLUDED.user_code, expires_at = EXCLUDED.expires_at`,
      [model, id, JSON.stringify(payload), text(payload.grantId), text(payload.uid), text(payload.userCode), expiresIn === undefined ? null : Math.max(0, Math.ceil(expiresIn))],
    );
  }

  async record(model: string, id: string): Promise<AuthorizationRecord | undefined> {
    const { rows } = await this.db.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM authz_record WHERE model = $1 AND id = $2 AND ${UNEXPIRED}`, [model, id]);
    return recordOf(rows[0]);
  }

  async recordByUid(model: string, uid: string): Promise<AuthorizationRecord | undefined> {
    const { rows } = await this.db.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM authz_record WHERE model = $1 AND uid = $2 AND ${UNEXPIRED} LIMIT 1`, [model, uid]);
    return recordOf(rows[0]);
  }

  async recordByUserCode(model: string, userCode: string): Promise<AuthorizationRecord | undefined> {
    const { rows } = await this.db.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM authz_record WHERE model = $1 AND user_code = $2 AND ${UNEXPIRED} LIMIT 1`, [model, userCode]);
    return recordOf(rows[0]);
  }

  async consumeRecord(model: string, id: string): Promise<boolean> {
    const { rowCount } = await this.db.query('UPDATE authz_record SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL', [model, id]);
    return rowCount > 0;
  }

  async removeRecord(model: string, id: string): Promise<void> {
    await this.db.query('DELETE FROM authz_record WHERE model = $1 AND id = $2', [model, id]);
  }

  async removeGrant(grantId: string): Promise<void> {
    await this.db.query('DELETE FROM authz_record WHERE grant_id = $1', [grantId]);
  }

  async sweepExpiredRecords(): Promise<number> {
    const { rowCount } = await this.db.query('DELETE FROM authz_record WHERE expires_at <= now()');
    return rowCount;
  }
}

function json(value: unknown): Record<string, unknown> {
  return (typeof value === 'string' ? JSON.parse(value) : value) as Record<string, unknown>;
}

function recordOf(row: RecordRow | undefined): AuthorizationRecord | undefined {
  if (!row) return undefined;
  const expiresAt = row.expires_at === null ? undefined : Math.floor(new Date(row.expires_at).getTime() / 1000);
  return { payload: json(row.payload), ...(expiresAt !== undefined ? { expiresAt } : {}), consumed: row.consumed_at !== null };
}

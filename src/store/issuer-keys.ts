import type { Database } from './database.ts';

/** One signing key of the embedded token issuer, as JWKs (JSON Web Key, RFC 7517). */
export interface IssuerKey {
  kid: string;
  alg: string;
  publicJwk: Record<string, unknown>;
  privateJwk: Record<string, unknown>;
}

// Arbitrary constant: servers (and `npm run token`) starting together on one database create one key, not several.
const ISSUER_KEY_LOCK = 7_341_204_015;

/**
 * The embedded issuer's keys, oldest (the signing one) first; `generate` makes the first one when there is
 * none yet, under a lock so that concurrent starts agree on it.
 */
export async function issuerKeys(db: Database, generate: () => Promise<IssuerKey>): Promise<IssuerKey[]> {
  const existing = await readIssuerKeys(db);
  if (existing.length > 0) return existing;
  const candidate = await generate();
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [ISSUER_KEY_LOCK]);
    await tx.query(
      `INSERT INTO issuer_key (kid, alg, public_jwk, private_jwk) SELECT $1, $2, $3, $4
        WHERE NOT EXISTS (SELECT 1 FROM issuer_key)`,
      [candidate.kid, candidate.alg, JSON.stringify(candidate.publicJwk), JSON.stringify(candidate.privateJwk)],
    );
    return readIssuerKeys(tx);
  });
}

async function readIssuerKeys(db: Pick<Database, 'query'>): Promise<IssuerKey[]> {
  const { rows } = await db.query<{ kid: string; alg: string; public_jwk: unknown; private_jwk: unknown }>(
    'SELECT kid, alg, public_jwk, private_jwk FROM issuer_key ORDER BY created_at, kid',
  );
  const parsed = (value: unknown) => (typeof value === 'string' ? JSON.parse(value) : value) as Record<string, unknown>;
  return rows.map((row) => ({ kid: row.kid, alg: row.alg, publicJwk: parsed(row.public_jwk), privateJwk: parsed(row.private_jwk) }));
}

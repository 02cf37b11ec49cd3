// A token signed by the embedded issuer of the server on a database: what `npm run token` prints, and how
// the tests and benchmarks get theirs (the same code, the same key, the same claims).
import { generateIssuerKey, signToken, type TokenRequest } from '../../src/security/embedded-issuer.ts';
import type { Database } from '../../src/store/database.ts';
import { issuerKeys, type IssuerKey } from '../../src/store/issuer-keys.ts';
import { migrate } from '../../src/store/migrate.ts';
import { openDatabase } from '../../src/store/open-database.ts';

export type EmbeddedTokenRequest = Omit<TokenRequest, 'issuer' | 'audience' | 'expiresIn'> & {
  /** The server's FHIR base URL: the token's audience and the embedded issuer's identifier. */
  audience: string;
  /** Lifetime in seconds (an hour by default). */
  expiresIn?: number;
};

/** A token from the embedded issuer whose key is in `db` (made there, as the server would, when there is none yet). */
export async function embeddedToken(db: Database, request: EmbeddedTokenRequest): Promise<string> {
  return signEmbeddedToken(await issuerKeys(db, generateIssuerKey), request);
}

/** A token signed with the embedded issuer's `keys` (read from its database beforehand). */
export function signEmbeddedToken(keys: readonly IssuerKey[], request: EmbeddedTokenRequest): Promise<string> {
  return signToken(keys, { ...request, issuer: request.audience, expiresIn: request.expiresIn ?? 3600 });
}

/** The embedded issuer's keys in the store at a DATABASE_URL: the schema brought up to date first (a new store has no key table yet). */
export async function embeddedIssuerKeysFor(databaseUrl: string): Promise<IssuerKey[]> {
  const db = await openDatabase(databaseUrl);
  try {
    await migrate(db);
    return await issuerKeys(db, generateIssuerKey);
  } finally {
    await db.close();
  }
}

/** A token from the embedded issuer of the store at a DATABASE_URL. */
export async function embeddedTokenFor(databaseUrl: string, request: EmbeddedTokenRequest): Promise<string> {
  return signEmbeddedToken(await embeddedIssuerKeysFor(databaseUrl), request);
}

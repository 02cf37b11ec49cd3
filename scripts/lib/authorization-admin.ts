// Registering the embedded authorization server's clients and local accounts, and minting EHR launches:
// what `npm run client`, `npm run account` and `npm run launch` do, and how the tests set up theirs.
import { randomBytes } from 'node:crypto';
import { NAMED_SCOPES } from '../../src/security/authorization-grants.ts';
import { EHR_LAUNCH_METADATA } from '../../src/security/authorization-server.ts';
import { createLaunch, parseLaunchRequest } from '../../src/security/launch.ts';
import { hashPassword } from '../../src/security/passwords.ts';
import { parseScopes } from '../../src/security/scopes.ts';
import { authorizationStore } from '../../src/store/authorization.ts';
import type { Database } from '../../src/store/database.ts';
import { migrate } from '../../src/store/migrate.ts';
import { openDatabase } from '../../src/store/open-database.ts';

export interface ClientRegistration {
  clientId: string;
  /** SMART scopes its tokens may carry at most (`system/*.cruds`; an app's `launch/patient openid fhirUser offline_access patient/*.rs`). */
  scope: string;
  /** A backend service's public keys (its assertions are signed with the private ones)… */
  jwks?: { keys: unknown[] };
  /** …or where it publishes them. */
  jwksUri?: string;
  /** …or a confidential web app's client secret (`client_secret_basic` or `_post`), stored hashed. */
  secret?: string;
  /** An app's redirect URIs: the client then uses the authorization code (public unless it has keys or a secret). */
  redirectUris?: string[];
  /** The name the approval page shows (the client id otherwise). */
  name?: string;
  /** An EHR, which may mint launches (`POST /auth/launch`) with a backend-services token. */
  ehr?: boolean;
}

/** The client's OAuth metadata as the provider reads it, from what `npm run client` was told (`secretHash` for `secret`). */
function clientMetadata(registration: ClientRegistration, secretHash?: string): Record<string, unknown> {
  const keys = registration.jwks ? { jwks: registration.jwks } : registration.jwksUri ? { jwks_uri: registration.jwksUri } : undefined;
  const app = (registration.redirectUris?.length ?? 0) > 0;
  if (keys && registration.secret !== undefined) throw new Error('a client authenticates with keys or with a secret, not both');
  const confidential = keys !== undefined || registration.secret !== undefined;
  if (!app && !confidential) throw new Error('a client needs keys (--jwks or --jwks-uri) or a secret (--secret) for backend services, or redirect URIs (--redirect-uri) for an app');
  if (registration.ehr && !confidential) throw new Error('an EHR (--ehr) gets its tokens as a backend service: give it keys (--jwks or --jwks-uri) or a secret (--secret)');
  const named = registration.scope.split(' ').filter(Boolean);
  const unknown = named.filter((scope) => parseScopes([scope]).length === 0 && !NAMED_SCOPES.includes(scope));
  if (unknown.length > 0) throw new Error(`not SMART scopes: ${unknown.join(' ')}`);
  return {
    client_id: registration.clientId,
    ...keys,
    ...(secretHash !== undefined ? { client_secret: secretHash } : {}),
    token_endpoint_auth_method: keys ? 'private_key_jwt' : secretHash !== undefined ? 'client_secret_basic' : 'none',
    grant_types: app ? ['authorization_code', 'refresh_token', ...(confidential ? ['client_credentials'] : [])] : ['client_credentials'],
    response_types: app ? ['code'] : [],
    redirect_uris: registration.redirectUris ?? [],
    ...(registration.name ? { client_name: registration.name } : {}),
    ...(registration.ehr ? { [EHR_LAUNCH_METADATA]: true } : {}),
  };
}

/** A new client secret: 32 random bytes, base64url. */
export function newClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

export async function registerClient(db: Database, registration: ClientRegistration): Promise<void> {
  if (registration.secret !== undefined && registration.secret.length < 32) throw new Error('a client secret has 32 characters at least');
  const secretHash = registration.secret !== undefined ? await hashPassword(registration.secret) : undefined;
  await authorizationStore(db).saveClient({ clientId: registration.clientId, metadata: clientMetadata(registration, secretHash), allowedScopes: registration.scope });
}

export async function removeClient(db: Database, clientId: string): Promise<boolean> {
  return authorizationStore(db).removeClient(clientId);
}

export interface AccountRegistration {
  username: string;
  password: string;
  /** `Practitioner/7`, `Patient/123`. */
  fhirUser?: string;
  /** The patient of a standalone launch. */
  patient?: string;
}

export async function registerAccount(db: Database, account: AccountRegistration): Promise<void> {
  if (account.password.length < 8) throw new Error('a password has 8 characters at least');
  for (const reference of [account.fhirUser, account.patient]) {
    if (reference !== undefined && !/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(reference)) throw new Error(`'${reference}' is not a reference like Practitioner/7`);
  }
  await authorizationStore(db).saveAccount({
    username: account.username,
    passwordHash: await hashPassword(account.password),
    ...(account.fhirUser ? { fhirUser: account.fhirUser } : {}),
    ...(account.patient ? { patient: account.patient } : {}),
  });
}

/**
 * An EHR launch id, as `POST /auth/launch` mints one: `request` is that endpoint's body (`patient`,
 * `encounter`, `fhirUser`, `expires_in`), checked alike; the references are the operator's word (not looked up).
 */
export async function registerLaunch(db: Database, request: Record<string, unknown>): Promise<string> {
  const launch = parseLaunchRequest(request);
  return createLaunch(authorizationStore(db), launch, launch.expiresIn);
}

/** Runs `work` on the store at a DATABASE_URL, its schema brought up to date first. */
export async function withStore<T>(databaseUrl: string, work: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase(databaseUrl);
  try {
    await migrate(db);
    return await work(db);
  } finally {
    await db.close();
  }
}

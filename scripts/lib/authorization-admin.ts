// Registering the embedded authorization server's clients and local accounts, and minting EHR launches:
// what `npm run client`, `npm run account` and `npm run launch` do, and how the tests set up theirs.
import { createLaunch, type LaunchContext } from '../../src/security/launch.ts';
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
  /** An app's redirect URIs: the client then uses the authorization code (public unless it has keys). */
  redirectUris?: string[];
}

/** The client's OAuth metadata as the provider reads it, from what `npm run client` was told. */
export function clientMetadata(registration: ClientRegistration): Record<string, unknown> {
  const keys = registration.jwks ? { jwks: registration.jwks } : registration.jwksUri ? { jwks_uri: registration.jwksUri } : undefined;
  const app = (registration.redirectUris?.length ?? 0) > 0;
  if (!app && !keys) throw new Error('a client needs keys (--jwks or --jwks-uri) for backend services, or redirect URIs (--redirect-uri) for an app');
  const named = registration.scope.split(' ').filter(Boolean);
  const unknown = named.filter((scope) => parseScopes([scope]).length === 0 && !/^(openid|profile|fhirUser|offline_access|online_access|launch(\/patient|\/encounter)?)$/.test(scope));
  if (unknown.length > 0) throw new Error(`not SMART scopes: ${unknown.join(' ')}`);
  return {
    client_id: registration.clientId,
    ...keys,
    token_endpoint_auth_method: keys ? 'private_key_jwt' : 'none',
    grant_types: app ? ['authorization_code', 'refresh_token', ...(keys ? ['client_credentials'] : [])] : ['client_credentials'],
    response_types: app ? ['code'] : [],
    redirect_uris: registration.redirectUris ?? [],
  };
}

export async function registerClient(db: Database, registration: ClientRegistration): Promise<void> {
  await authorizationStore(db).saveClient({ clientId: registration.clientId, metadata: clientMetadata(registration), allowedScopes: registration.scope });
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

/** An EHR launch id bound to `context`, valid `expiresIn` seconds. */
export function registerLaunch(db: Database, context: LaunchContext, expiresIn?: number): Promise<string> {
  return createLaunch(authorizationStore(db), context, expiresIn);
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

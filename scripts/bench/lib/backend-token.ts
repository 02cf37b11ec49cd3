// A benchmark's token, got the way a hospital's or a lab's feed gets one (SMART Backend Services): a client
// registered with its public key through the code `npm run client` runs, then a client_credentials request to
// the server's /auth/token over HTTP with an assertion signed by its private key. The token's verification,
// scopes and caching are then those of every client's.
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import type { Database } from '../../../src/store/database.ts';
import { registerClient, withStore } from '../../lib/authorization-admin.ts';

export interface BackendClient {
  clientId: string;
  kid: string;
  privateKey: CryptoKey;
}

/** Registers `clientId` with a new ES384 key pair and `scope` at most, in the server's store (migrated). */
async function registerBackendClient(db: Database, clientId: string, scope: string): Promise<BackendClient> {
  const { publicKey, privateKey } = await generateKeyPair('ES384', { extractable: true });
  const kid = `${clientId}-${randomUUID()}`;
  await registerClient(db, { clientId, scope, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES384', use: 'sig' }] } });
  return { clientId, kid, privateKey };
}

/** The same for the store at a DATABASE_URL, before a server process is started on it (it holds a PGlite directory). */
export function registerBackendClientAt(databaseUrl: string, clientId: string, scope: string): Promise<BackendClient> {
  return withStore(databaseUrl, (db) => registerBackendClient(db, clientId, scope));
}

/** An access token for `scope` from the server at `origin` (`http://127.0.0.1:8080`). */
export async function backendToken(origin: string, client: BackendClient, scope: string): Promise<string> {
  const tokenEndpoint = `${origin}/auth/token`;
  const assertion = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES384', kid: client.kid, typ: 'JWT' })
    .setIssuer(client.clientId)
    .setSubject(client.clientId)
    .setAudience(tokenEndpoint)
    .setJti(randomUUID())
    .setExpirationTime('5m')
    .sign(client.privateKey);
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }),
  });
  const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
  if (!response.ok || !body.access_token) throw new Error(`${tokenEndpoint}: ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`);
  return body.access_token;
}

/** Registers a client and gets its token from the listening server at `origin`: `Bearer <token>`. */
export async function backendAuthorization(db: Database, origin: string, clientId: string, scope: string): Promise<string> {
  return `Bearer ${await backendToken(origin, await registerBackendClient(db, clientId, scope), scope)}`;
}

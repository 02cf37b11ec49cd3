// The embedded authorization server (issue 17, items 3 and 6), on a listening server, as SMART clients use it:
// a lab's feed (backend services: client_credentials with a private_key_jwt assertion), and an app run with
// the stock SMART client from npm (fhirclient) through the login page, standalone and from an EHR launch,
// with PKCE and a refresh token. Their tokens open /fhir within their scopes, and nothing else gets one.
import { randomBytes, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fastify from 'fastify';
import smart from 'fhirclient';
import { decodeJwt, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import t from 'tap';
import { buildApp } from '../src/app.ts';
import { authorizationRoutes } from '../src/http/authorization-routes.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { createAuthorizationServer } from '../src/security/authorization-server.ts';
import { generateIssuerKey } from '../src/security/embedded-issuer.ts';
import { authorizationStore } from '../src/store/authorization.ts';
import { issuerKeys } from '../src/store/issuer-keys.ts';
import { migrate } from '../src/store/migrate.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { registerAccount, registerClient } from '../scripts/lib/authorization-admin.ts';
import { FHIR_JSON, openTestDatabase } from './helpers/app.ts';
import { freePort } from './helpers/server-process.ts';

const port = await freePort();
const origin = `http://127.0.0.1:${port}`;
const fhirBase = `${origin}/fhir`;
const tokenEndpoint = `${origin}/auth/token`;

// A second issuer, with keys of its own, that the server trusts by configuration only (FHIR_AUTH_ISSUERS),
// as a deployment trusts Pro Santé Connect or FranceConnect.
const otherPort = await freePort();
const otherOrigin = `http://127.0.0.1:${otherPort}`;

const database = await openTestDatabase();
const app = await buildApp({
  config: {
    logLevel: 'silent',
    bodyLimit: 1024 * 1024,
    audit: 'off',
    authAudience: fhirBase,
    authIssuers: [{ issuer: `${otherOrigin}/auth`, jwksUri: `${otherOrigin}/auth/jwks` }],
    rateLimit: 0,
  },
  storage: sqlStorage(database.db),
  validator: createProfileValidator({ defaultProfiles: 'none' }),
});
await app.listen({ port, host: '127.0.0.1' });
t.teardown(async () => {
  await app.close();
  await database.drop();
});

// The records the tests read: two patients, an observation of the first, a practitioner.
async function signedToken(claims: Record<string, unknown>): Promise<string> {
  const [key] = await issuerKeys(database.db, generateIssuerKey);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key!.alg, kid: key!.kid })
    .setIssuer(fhirBase)
    .setAudience(fhirBase)
    .setExpirationTime('5m')
    .sign(await importJWK(key!.privateJwk as JWK, key!.alg));
}
const setup = await signedToken({ scope: 'system/*.cruds', client_id: 'setup' });

async function create(resource: Record<string, unknown>): Promise<string> {
  const response = await fetch(`${fhirBase}/${resource.resourceType}`, { method: 'POST', headers: { authorization: `Bearer ${setup}`, 'content-type': FHIR_JSON }, body: JSON.stringify(resource) });
  if (response.status !== 201) throw new Error(`setup: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { id: string }).id;
}
const jeanne = await create({ resourceType: 'Patient', name: [{ family: 'Martin', given: ['Jeanne'] }] });
const paul = await create({ resourceType: 'Patient', name: [{ family: 'Durand', given: ['Paul'] }] });
await create({ resourceType: 'Observation', status: 'final', code: { text: 'glycémie' }, subject: { reference: `Patient/${jeanne}` } });
const practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Lefèvre' }] });

// --- Backend services -------------------------------------------------------------------------------

const labKeys = await generateKeyPair('ES384', { extractable: true });
const labJwk = { ...(await exportJWK(labKeys.publicKey)), kid: 'lab-1', alg: 'ES384', use: 'sig' };
await registerClient(database.db, { clientId: 'lab-feed', scope: 'system/Patient.rs system/Observation.cruds', jwks: { keys: [labJwk] } });

function assertion(clientId: string, key: CryptoKey, options: { jti?: string; aud?: string; alg?: string; kid?: string } = {}): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: options.alg ?? 'ES384', kid: options.kid ?? 'lab-1', typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(options.aud ?? tokenEndpoint)
    .setJti(options.jti ?? randomBytes(16).toString('hex'))
    .setExpirationTime('5m')
    .sign(key);
}

async function clientCredentials(scope: string, clientAssertion: string, endpoint = tokenEndpoint): Promise<{ status: number; body: Record<string, any> }> {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: clientAssertion }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

/** A fhirclient Client on the FHIR base with `accessToken`, as an app holding a token uses it. */
function fhirClientWith(accessToken: string) {
  return smart({} as IncomingMessage, {} as ServerResponse).client({ serverUrl: fhirBase, tokenResponse: { access_token: accessToken } });
}

async function fhirStatus(accessToken: string, path: string, init: { method?: string; body?: unknown } = {}): Promise<number> {
  const response = await fetch(`${fhirBase}/${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${accessToken}`, ...(init.body ? { 'content-type': FHIR_JSON } : {}) },
    ...(init.body ? { body: JSON.stringify(init.body) } : {}),
  });
  await response.arrayBuffer();
  return response.status;
}

// --- App launch, with fhirclient -----------------------------------------------------------------------

const APP_SCOPE = 'launch launch/patient openid fhirUser offline_access patient/*.rs';
const appServer = await startApp();
t.teardown(() => new Promise<void>((resolve) => appServer.server.close(() => resolve())));
await registerClient(database.db, { clientId: 'dossier-app', name: 'Dossier du patient', scope: APP_SCOPE, redirectUris: [`${appServer.url}/callback`] });
await registerAccount(database.db, { username: 'jeanne', password: 'correct horse battery', fhirUser: `Patient/${jeanne}`, patient: `Patient/${jeanne}` });
await registerAccount(database.db, { username: 'dr-lefevre', password: 'stéthoscope 2026', fhirUser: `Practitioner/${practitioner}` });

/**
 * A login account of one test's own, as `jeanne` or `dr-lefevre` (same user, same password): approvals are
 * remembered per account, so a test that expects the approval page, or none, must not inherit another's.
 */
async function ownAccount(as: 'jeanne' | 'dr-lefevre', test: string): Promise<string> {
  const username = `${as}-${test}`;
  if (as === 'jeanne') await registerAccount(database.db, { username, password: 'correct horse battery', fhirUser: `Patient/${jeanne}`, patient: `Patient/${jeanne}` });
  else await registerAccount(database.db, { username, password: 'stéthoscope 2026', fhirUser: `Practitioner/${practitioner}` });
  return username;
}

/**
 * The app: a Node server using fhirclient's own Node API, as its README shows. `/launch` authorizes
 * (standalone, or with the EHR's `iss` and `launch`), `/callback` completes and reads with the token.
 */
async function startApp(): Promise<{ server: Server; url: string; last: Record<string, any> }> {
  const memory = new Map<string, unknown>();
  const storage = {
    get: async (key: string) => memory.get(key),
    set: async (key: string, value: unknown) => {
      memory.set(key, value);
      return value;
    },
    unset: async (key: string) => memory.delete(key),
  };
  const state = { server: undefined as unknown as Server, url: '', last: {} as Record<string, any> };
  state.server = createServer((request, response) => {
    const url = new URL(request.url!, state.url);
    const api = smart(request, response, storage as never);
    void (async () => {
      try {
        if (url.pathname === '/launch') {
          await api.authorize({ clientId: 'dossier-app', scope: APP_SCOPE, redirectUri: '/callback', ...(url.searchParams.has('iss') ? {} : { iss: fhirBase }) });
          return;
        }
        const client = await api.ready();
        const patient = client.patient.id ? await client.patient.read() : undefined;
        state.last = { client, tokenResponse: client.state.tokenResponse, patient };
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ patient: patient?.id ?? null }));
      } catch (error) {
        state.last = { error };
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end(String(error));
      }
    })();
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

t.test('discovery: smart-configuration names the endpoints, grants, PKCE S256 and capabilities', async (t) => {
  const configuration = (await (await fetch(`${fhirBase}/.well-known/smart-configuration`)).json()) as Record<string, any>;
  t.equal(configuration.token_endpoint, tokenEndpoint);
  t.equal(configuration.authorization_endpoint, `${origin}/auth/authorize`);
  t.same(configuration.code_challenge_methods_supported, ['S256']);
  t.ok(configuration.grant_types_supported.includes('client_credentials') && configuration.grant_types_supported.includes('authorization_code'));
  t.ok(configuration.token_endpoint_auth_signing_alg_values_supported.includes('RS384') && configuration.token_endpoint_auth_signing_alg_values_supported.includes('ES384'));
  t.same(configuration.token_endpoint_auth_methods_supported, ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none']);
  for (const capability of ['launch-ehr', 'launch-standalone', 'client-public', 'client-confidential-asymmetric', 'client-confidential-symmetric', 'context-ehr-patient', 'context-ehr-encounter', 'context-standalone-patient', 'permission-v2']) {
    t.ok(configuration.capabilities.includes(capability), capability);
  }
  const metadata = (await (await fetch(`${fhirBase}/metadata`)).json()) as Record<string, any>;
  const oauthUris = metadata.rest[0].security.extension.find((extension: { url: string }) => extension.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris');
  t.ok(oauthUris, 'the CapabilityStatement carries the SMART oauth-uris extension');
  t.equal(oauthUris.extension.find((e: { url: string }) => e.url === 'token').valueUri, tokenEndpoint, 'with the token endpoint of this server');
  t.equal(oauthUris.extension.find((e: { url: string }) => e.url === 'authorize').valueUri, `${origin}/auth/authorize`);
});

t.test('backend services: a registered feed gets a token with its key and writes within its scopes', async (t) => {
  const { status, body } = await clientCredentials('system/Patient.rs system/Observation.cruds', await assertion('lab-feed', labKeys.privateKey));
  t.equal(status, 200, JSON.stringify(body));
  t.equal(body.token_type, 'Bearer');
  t.equal(body.scope, 'system/Patient.rs system/Observation.cruds');
  const claims = decodeJwt(body.access_token);
  t.equal(claims.aud, fhirBase, 'the token is for this FHIR base');
  t.equal(claims.iss, `${origin}/auth`);
  t.equal(claims.client_id, 'lab-feed');

  const client = fhirClientWith(body.access_token);
  const patient = await client.request(`Patient/${jeanne}`);
  t.equal(patient.id, jeanne, 'fhirclient reads with the token');
  const observation = await client.create({ resourceType: 'Observation', status: 'final', code: { text: 'potassium' }, subject: { reference: `Patient/${jeanne}` } });
  t.equal(observation.resourceType, 'Observation', 'and writes an Observation');
  t.equal(await fhirStatus(body.access_token, 'Patient', { method: 'POST', body: { resourceType: 'Patient' } }), 403, 'but creates no Patient: system/Patient.rs');
  t.equal(await fhirStatus(body.access_token, `Practitioner/${practitioner}`), 403, 'nor reads a type it was not given');
});

t.test('backend services: a narrower request gets a narrower token, one beyond the registration gets none', async (t) => {
  const narrow = await clientCredentials('system/Patient.rs', await assertion('lab-feed', labKeys.privateKey));
  t.equal(narrow.status, 200);
  t.equal(narrow.body.scope, 'system/Patient.rs');
  t.equal(await fhirStatus(narrow.body.access_token, `Observation?subject=Patient/${jeanne}`), 403, 'the token reads no Observation');
  const beyond = await clientCredentials('system/*.cruds', await assertion('lab-feed', labKeys.privateKey));
  t.equal(beyond.status, 400);
  t.equal(beyond.body.error, 'invalid_scope');
});

t.test('backend services: wrong key, replayed jti, wrong audience, unknown client are refused', async (t) => {
  const stranger = await generateKeyPair('ES384', { extractable: true });
  const forged = await clientCredentials('system/Patient.rs', await assertion('lab-feed', stranger.privateKey));
  t.equal(forged.status, 401, 'an assertion signed by another key');
  t.equal(forged.body.error, 'invalid_client');

  const jti = randomBytes(16).toString('hex');
  t.equal((await clientCredentials('system/Patient.rs', await assertion('lab-feed', labKeys.privateKey, { jti }))).status, 200, 'a first assertion');
  const replayed = await clientCredentials('system/Patient.rs', await assertion('lab-feed', labKeys.privateKey, { jti }));
  t.equal(replayed.status, 401, 'the same jti again');
  t.equal(replayed.body.error, 'invalid_client');

  const elsewhere = await clientCredentials('system/Patient.rs', await assertion('lab-feed', labKeys.privateKey, { aud: 'https://other.example/token' }));
  t.equal(elsewhere.status, 401, 'an assertion for another server');

  const unknown = await clientCredentials('system/Patient.rs', await assertion('nobody', labKeys.privateKey));
  t.equal(unknown.status, 401, 'a client nobody registered');
  t.equal(unknown.body.error, 'invalid_client');
});

/** A user's browser: follows redirects by hand, keeps the authorization server's cookies. */
class Browser {
  private readonly cookies = new Map<string, string>();

  async go(url: string, init: { method?: string; form?: Record<string, string>; body?: URLSearchParams } = {}): Promise<{ status: number; url: string; location?: string; text: string }> {
    const response = await fetch(url, {
      method: init.method ?? 'GET',
      redirect: 'manual',
      headers: {
        ...(this.cookies.size ? { cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ') } : {}),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(init.form ? { body: init.body ?? new URLSearchParams(init.form) } : {}),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair!.indexOf('=');
      const name = pair!.slice(0, at).trim();
      const value = pair!.slice(at + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const location = response.headers.get('location') ?? undefined;
    return { status: response.status, url, ...(location ? { location: new URL(location, url).href } : {}), text: await response.text() };
  }

  /** Follows redirects from `url` until a page that is no redirect, or `stop` says so. */
  async follow(url: string, stop: (url: string) => boolean = () => false): Promise<{ status: number; url: string; location?: string; text: string }> {
    let page = await this.go(url);
    for (let hops = 0; page.location && !stop(page.location) && hops < 10; hops++) page = await this.go(page.location);
    return page;
  }
}

/** A hidden or named field's value in a page's form (the anti-forgery token, say). */
function formValue(page: { text: string }, name: string): string {
  const match = new RegExp(`name="${name}" value="([^"]*)"`).exec(page.text);
  if (!match) throw new Error(`no ${name} in the page: ${page.text.slice(0, 300)}`);
  return match[1]!;
}

async function logIn(browser: Browser, start: string, username: string, password: string) {
  const login = await browser.follow(start);
  if (!/\/auth\/interaction\//.test(login.url)) throw new Error(`expected the login page, got ${login.status} ${login.url}: ${login.text.slice(0, 300)}`);
  const posted = await browser.go(login.url, { method: 'POST', form: { csrf: formValue(login, 'csrf'), username, password } });
  return { login, posted };
}

/** The approval page's boxes: the scopes offered, ticked. */
function offeredScopes(page: { text: string }): string[] {
  return [...page.text.matchAll(/name="scope" value="([^"]*)"/g)].map((match) => match[1]!.replace(/&amp;/g, '&'));
}

/** Answers the approval page (Approve with the boxes but `untick`, or Deny); returns the next page, not followed. */
async function answer(browser: Browser, approval: { url: string; text: string }, decision: 'approve' | 'deny', untick: readonly string[] = []) {
  const form = new URLSearchParams({ csrf: formValue(approval, 'csrf'), decision });
  for (const scope of offeredScopes(approval)) if (!untick.includes(scope)) form.append('scope', scope);
  return browser.go(approval.url, { method: 'POST', form: Object.fromEntries(form) as Record<string, string>, body: form });
}

t.test('standalone launch with fhirclient: log in, PKCE, the patient in context, a refresh token', async (t) => {
  const username = await ownAccount('jeanne', 'standalone');
  const browser = new Browser();
  const { login, posted } = await logIn(browser, `${appServer.url}/launch`, username, 'correct horse battery');
  t.equal(login.status, 200, 'the login page');
  t.match(login.text, /<form method="post"/);
  t.equal(posted.status, 303, 'the password is accepted');
  const approval = await browser.follow(posted.location!);
  t.equal(approval.status, 200, 'then the approval page');
  t.match(approval.text, /Dossier du patient/, 'naming the app');
  t.match(approval.text, /lire et rechercher toutes les données dans le dossier du patient concerné/, 'what it asks, in plain words');
  t.match(approval.text, /garder cet accès 30 jours/);
  t.same(offeredScopes(approval).sort(), ['offline_access', 'patient/*.rs'], 'access and its keeping may be left out, identity and context not');
  const approved = await answer(browser, approval, 'approve');
  t.equal(approved.status, 303);
  const done = await browser.follow(approved.location!);
  t.equal(done.status, 200, `the app completed: ${done.text.slice(0, 300)}`);
  t.same(JSON.parse(done.text), { patient: jeanne }, 'and read its patient with the token');

  const { client, tokenResponse } = appServer.last;
  t.equal(tokenResponse.patient, jeanne, 'the token response names the patient');
  t.ok(tokenResponse.refresh_token, 'offline_access: a refresh token');
  t.ok(tokenResponse.id_token, 'openid: an ID token');
  t.equal(decodeJwt(tokenResponse.id_token).fhirUser, `${fhirBase}/Patient/${jeanne}`, 'whose fhirUser is the patient');
  t.equal(client.getFhirUser(), `Patient/${jeanne}`, 'as fhirclient reads it');
  t.match(tokenResponse.scope, /patient\/\*\.rs/);

  t.equal(await fhirStatus(tokenResponse.access_token, `Observation?subject=Patient/${jeanne}`), 200, 'her observations');
  t.equal(await fhirStatus(tokenResponse.access_token, `Patient/${paul}`), 404, 'not another patient: patient/ scopes stay in her compartment');
  t.equal(await fhirStatus(tokenResponse.access_token, 'Observation', { method: 'POST', body: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${jeanne}` } } }), 403, 'and no write: .rs');

  const before = tokenResponse.access_token;
  await client.refresh();
  const after = client.state.tokenResponse;
  t.not(after.access_token, before, 'the refresh token gives a new access token');
  t.equal(after.patient, jeanne, 'with the same launch context');
  t.equal(((await client.request(`Patient/${jeanne}`)) as { id: string }).id, jeanne, 'which works');

  // A second launch, in another browser: log in, and no approval asked again.
  const again = new Browser();
  const second = await logIn(again, `${appServer.url}/launch`, username, 'correct horse battery');
  const back = await again.follow(second.posted.location!);
  t.equal(back.status, 200, `the approval was remembered: ${back.text.slice(0, 200)}`);
  t.same(JSON.parse(back.text), { patient: jeanne });
});

// --- EHR launch over HTTP ------------------------------------------------------------------------------

const ehrKeys = await generateKeyPair('ES384', { extractable: true });
await registerClient(database.db, { clientId: 'ehr', ehr: true, scope: 'system/Patient.rs system/Encounter.rs', jwks: { keys: [{ ...(await exportJWK(ehrKeys.publicKey)), kid: 'ehr-1', alg: 'ES384', use: 'sig' }] } });
const encounter = await create({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: { reference: `Patient/${paul}` } });

/** The EHR's token, as a backend service gets one. */
async function ehrToken(): Promise<string> {
  const { status, body } = await clientCredentials('system/Patient.rs', await assertion('ehr', ehrKeys.privateKey, { kid: 'ehr-1' }));
  if (status !== 200) throw new Error(JSON.stringify(body));
  return body.access_token as string;
}

async function mintLaunch(token: string | undefined, body: unknown): Promise<{ status: number; body: Record<string, any>; headers: Headers }> {
  const response = await fetch(`${origin}/auth/launch`, {
    method: 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any>, headers: response.headers };
}

t.test('EHR launch over HTTP: the EHR mints a launch, the app gets its patient, the token stays in that record', async (t) => {
  const minted = await mintLaunch(await ehrToken(), { patient: `Patient/${paul}`, encounter: `Encounter/${encounter}`, fhirUser: `Practitioner/${practitioner}` });
  t.equal(minted.status, 200, JSON.stringify(minted.body));
  t.type(minted.body.launch, 'string');
  t.equal(minted.body.expires_in, 300, 'short-lived: 5 minutes');
  t.equal(minted.headers.get('cache-control'), 'no-store');

  const browser = new Browser();
  const start = `${appServer.url}/launch?iss=${encodeURIComponent(fhirBase)}&launch=${minted.body.launch}`;
  const { posted } = await logIn(browser, start, await ownAccount('dr-lefevre', 'ehr'), 'stéthoscope 2026');
  t.equal(posted.status, 303);
  const approval = await browser.follow(posted.location!);
  t.match(approval.text, /DURAND Paul/, 'the approval names the launch patient');
  const done = await browser.follow((await answer(browser, approval, 'approve')).location!);
  t.equal(done.status, 200, done.text.slice(0, 300));
  t.same(JSON.parse(done.text), { patient: paul }, 'the app reads the launch patient');
  const { tokenResponse } = appServer.last;
  t.equal(tokenResponse.patient, paul, 'the token response carries the patient');
  t.equal(tokenResponse.encounter, encounter, 'and the encounter');
  const claims = decodeJwt(tokenResponse.access_token);
  t.equal(claims.patient, paul);
  t.equal(claims.fhirUser, `Practitioner/${practitioner}`, 'the token speaks for the practitioner');
  t.equal(await fhirStatus(tokenResponse.access_token, `Patient/${paul}`), 200, 'the launch patient is read');
  t.equal(await fhirStatus(tokenResponse.access_token, `Patient/${jeanne}`), 404, 'another patient is not: patient/ scopes stay in the launch record');

  // Single use: the same launch id again opens nothing.
  const reused = await new Browser().follow(start);
  t.notMatch(reused.url, /code=/, 'a used launch gives no code');
  t.match(reused.url, /error=invalid_request/, 'but an error to the app');

  const unknown = await new Browser().follow(`${appServer.url}/launch?iss=${encodeURIComponent(fhirBase)}&launch=not-a-launch`);
  t.notMatch(unknown.url, /code=/, 'an unknown launch gives no code');
});

t.test('EHR launch over HTTP: only the user it names may log in', async (t) => {
  const minted = await mintLaunch(await ehrToken(), { patient: paul, fhirUser: 'Practitioner/someone-else' });
  t.equal(minted.status, 422, 'a user that does not exist');
  const other = await create({ resourceType: 'Practitioner', name: [{ family: 'Autre' }] });
  const forOther = await mintLaunch(await ehrToken(), { patient: paul, fhirUser: `Practitioner/${other}` });
  t.equal(forOther.status, 200);
  const { posted } = await logIn(new Browser(), `${appServer.url}/launch?iss=${encodeURIComponent(fhirBase)}&launch=${forOther.body.launch}`, 'dr-lefevre', 'stéthoscope 2026');
  t.equal(posted.status, 403, 'another user is refused');
  t.match(posted.text, /un autre utilisateur/);
});

t.test('EHR launch over HTTP: no token, a bad token, a client that is no EHR, a bad body, an unknown patient, an encounter of another patient', async (t) => {
  const outcome = (body: Record<string, any>) => body.resourceType === 'OperationOutcome' && body.issue?.length > 0;
  const none = await mintLaunch(undefined, { patient: paul });
  t.equal(none.status, 401, 'no token');
  t.ok(outcome(none.body));
  t.match(none.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
  const garbage = await mintLaunch('not.a.token', { patient: paul });
  t.equal(garbage.status, 401, 'a token that is no JWT');
  t.match(garbage.headers.get('www-authenticate') ?? '', /error="invalid_token"/);

  const lab = await clientCredentials('system/Patient.rs', await assertion('lab-feed', labKeys.privateKey));
  const notEhr = await mintLaunch(lab.body.access_token, { patient: paul });
  t.equal(notEhr.status, 403, 'a registered client not marked as an EHR');
  t.ok(outcome(notEhr.body));
  t.match(notEhr.body.issue[0].diagnostics, /--ehr/);
  const patientToken = await signedToken({ scope: 'patient/*.rs', client_id: 'ehr', patient: paul });
  t.equal((await mintLaunch(patientToken, { patient: paul })).status, 403, "the EHR's token without a system/ scope reading Patient");

  const token = await ehrToken();
  const missing = await mintLaunch(token, undefined);
  t.equal(missing.status, 400, 'no body');
  t.ok(outcome(missing.body));
  const empty = await mintLaunch(token, '');
  t.equal(empty.status, 400, 'an empty JSON body');
  t.equal((await mintLaunch(token, {})).status, 400, 'no patient');
  t.equal((await mintLaunch(token, [paul])).status, 400, 'not an object');
  const malformed = await mintLaunch(token, { patient: 'Observation/1' });
  t.equal(malformed.status, 400, 'not a patient reference');
  t.same(malformed.body.issue[0].expression, ['patient']);
  t.equal((await mintLaunch(token, { patient: paul, expires_in: 86400 })).status, 400, 'a lifetime beyond an hour');
  t.equal((await mintLaunch(token, { patient: paul, extra: 1 })).status, 400, 'an unknown field');
  const unknown = await mintLaunch(token, { patient: 'Patient/nobody' });
  t.equal(unknown.status, 422, 'a patient that does not exist');
  t.equal(unknown.body.issue[0].code, 'not-found');
  t.equal((await mintLaunch(token, { patient: paul, encounter: 'Encounter/nothing' })).status, 422, 'an encounter that does not exist');
  const elsewhere = await mintLaunch(token, { patient: jeanne, encounter: `Encounter/${encounter}` });
  t.equal(elsewhere.status, 422, "an encounter of another patient (Paul's, for Jeanne)");
  t.equal(elsewhere.body.issue[0].code, 'business-rule');
  t.same(elsewhere.body.issue[0].expression, ['encounter']);
  const groupEncounter = await create({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' } });
  t.equal((await mintLaunch(token, { patient: paul, encounter: `Encounter/${groupEncounter}` })).status, 422, 'an encounter of no patient');
});

t.test('login page: a wrong password is refused and the page is inert', async (t) => {
  const browser = new Browser();
  const { login, posted } = await logIn(browser, `${appServer.url}/launch`, 'jeanne', 'wrong password');
  t.equal(posted.status, 401, 'wrong password');
  t.notOk(posted.location, 'no redirect to the app');
  t.match(posted.text, /incorrect/);
  const unknownUser = await browser.go(login.url, { method: 'POST', form: { csrf: formValue(login, 'csrf'), username: 'mallory', password: 'correct horse battery' } });
  t.equal(unknownUser.status, 401, 'unknown user');
  const forged = await browser.go(login.url, { method: 'POST', form: { username: 'jeanne', password: 'correct horse battery' } });
  t.equal(forged.status, 403, 'a form without the page\'s anti-forgery token');
  t.notOk(forged.location);
  const otherToken = await browser.go(login.url, { method: 'POST', form: { csrf: 'x'.repeat(32), username: 'jeanne', password: 'correct horse battery' } });
  t.equal(otherToken.status, 403, 'or with another one');
  const head = await fetch(login.url);
  t.match(head.headers.get('content-security-policy') ?? '', /default-src 'none'/, 'no script, style or load allowed');
  t.notMatch(login.text, /<script|<style|https?:\/\/(?!127\.0\.0\.1)/, 'and none in the page');
});

// --- PKCE, by hand ----------------------------------------------------------------------------------------

t.test('authorization code: a wrong PKCE verifier, or none, gets no token', async (t) => {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const redirectUri = `${appServer.url}/callback`;
  const authorize = new URL(`${origin}/auth/authorize`);
  for (const [name, value] of Object.entries({ response_type: 'code', client_id: 'dossier-app', redirect_uri: redirectUri, scope: 'openid patient/*.rs', state: 'xyz', aud: fhirBase, code_challenge: challenge, code_challenge_method: 'S256' })) {
    authorize.searchParams.set(name, value);
  }
  const browser = new Browser();
  const { posted } = await logIn(browser, authorize.href, await ownAccount('jeanne', 'pkce'), 'correct horse battery');
  const approval = await browser.follow(posted.location!);
  const back = await browser.follow((await answer(browser, approval, 'approve')).location!, (url) => url.startsWith(redirectUri));
  const code = new URL(back.location!).searchParams.get('code');
  t.ok(code, 'a code');
  const exchange = (codeVerifier?: string) =>
    fetch(tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: code!, redirect_uri: redirectUri, client_id: 'dossier-app', ...(codeVerifier ? { code_verifier: codeVerifier } : {}) }),
    }).then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, any> }));
  const wrong = await exchange(randomBytes(32).toString('base64url'));
  t.equal(wrong.status, 400, 'a wrong verifier');
  t.equal(wrong.body.error, 'invalid_grant');
  const missing = await exchange();
  t.equal(missing.status, 400, 'no verifier');

  const noChallenge = new URL(authorize);
  noChallenge.searchParams.delete('code_challenge');
  noChallenge.searchParams.delete('code_challenge_method');
  const refused = await new Browser().go(noChallenge.href);
  t.match(refused.location ?? '', /error=invalid_request/, 'an authorization request without PKCE is refused');

  const otherServer = new URL(authorize);
  otherServer.searchParams.set('aud', 'https://other.example/fhir');
  const confused = await new Browser().go(otherServer.href);
  t.match(confused.location ?? '', /error=invalid_request/, 'an authorization request for another FHIR server is refused');
});

// --- Patient picker, approval, a confidential app ---------------------------------------------------------

t.test('standalone launch by a professional: a patient picker (family name or INS), escaped, whose choice is the context', async (t) => {
  const lea = await create({ resourceType: 'Patient', name: [{ family: 'Durand-<i>Test</i>', given: ['Léa'] }], birthDate: '1979-03-05', identifier: [{ system: 'urn:oid:1.2.250.1.213.1.4.8', value: '279035121518989' }] });
  const browser = new Browser();
  const { posted } = await logIn(browser, `${appServer.url}/launch`, await ownAccount('dr-lefevre', 'picker'), 'stéthoscope 2026');
  const picker = await browser.follow(posted.location!);
  t.equal(picker.status, 200);
  t.match(picker.text, /<title>Choix du patient<\/title>/, 'a professional has no record of their own: the picker');
  t.match(picker.text, /<form method="get"/, 'with a search form');

  const byName = await browser.go(`${picker.url}?q=${encodeURIComponent('Dur')}`);
  t.match(byName.text, /DURAND Paul/, 'a family name prefix finds Paul');
  t.match(byName.text, /DURAND-&lt;I&gt;TEST&lt;\/I&gt; Léa, né\(e\) le 05\/03\/1979, INS 279035121518989/, 'and Léa, escaped');
  t.notMatch(byName.text, /<i>|<I>/i, 'no markup from the record');
  t.notMatch(byName.text, /MARTIN/, 'not Jeanne');
  const byIns = await browser.go(`${picker.url}?q=${encodeURIComponent('2 79 03 51 215 189 89')}`);
  t.same([...byIns.text.matchAll(/name="patient" value="([^"]+)"/g)].map((match) => match[1]), [lea], 'an INS finds its patient only');
  const nothing = await browser.go(`${picker.url}?q=${encodeURIComponent('<script>')}`);
  t.match(nothing.text, /Aucun patient trouvé pour « &lt;script&gt; »/, 'an empty result, the query escaped');

  const forged = await browser.go(picker.url, { method: 'POST', form: { patient: paul } });
  t.equal(forged.status, 403, 'a choice without the anti-forgery token');
  const unknown = await browser.go(picker.url, { method: 'POST', form: { csrf: formValue(byName, 'csrf'), patient: 'nobody' } });
  t.equal(unknown.status, 400, 'a patient that does not exist');
  const chosen = await browser.go(picker.url, { method: 'POST', form: { csrf: formValue(byName, 'csrf'), patient: paul } });
  t.equal(chosen.status, 303, 'Paul chosen');
  const approval = await browser.follow(chosen.location!);
  t.match(approval.text, /<title>Autorisation<\/title>/, 'then the approval');
  t.match(approval.text, /DURAND Paul/, 'naming the patient chosen');
  const done = await browser.follow((await answer(browser, approval, 'approve')).location!);
  t.equal(done.status, 200, done.text.slice(0, 300));
  t.same(JSON.parse(done.text), { patient: paul }, 'the app reads the chosen patient');
  t.equal(decodeJwt(appServer.last.tokenResponse.access_token).patient, paul, 'the token carries him');
  t.equal(await fhirStatus(appServer.last.tokenResponse.access_token, `Patient/${jeanne}`), 404, 'and only him');
});

/** An authorization request of `clientId` by hand (PKCE S256); its code verifier. */
function authorizationRequest(clientId: string, redirectUri: string, scope: string): { url: string; verifier: string } {
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL(`${origin}/auth/authorize`);
  const params = { response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope, state: 'st4te', aud: fhirBase, code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256' };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return { url: url.href, verifier };
}

async function tokenRequest(form: Record<string, string>, authorization?: string): Promise<{ status: number; body: Record<string, any> }> {
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
    body: new URLSearchParams(form),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

t.test('a confidential app with a secret: the approval as given (never beyond it or the registration), right secret tokens, wrong secret 401', async (t) => {
  const secret = randomBytes(32).toString('base64url');
  const redirectUri = `${appServer.url}/web-callback`;
  await registerClient(database.db, { clientId: 'web-app', name: 'Cabinet <Lefèvre>', secret, scope: 'openid fhirUser user/Patient.rs user/Observation.rs', redirectUris: [redirectUri] });
  const stored = await authorizationStore(database.db).client('web-app');
  t.equal(stored?.metadata.token_endpoint_auth_method, 'client_secret_basic');
  t.notMatch(JSON.stringify(stored), new RegExp(secret), 'the secret is not stored, its hash is');

  const browser = new Browser();
  const first = authorizationRequest('web-app', redirectUri, 'openid fhirUser user/Patient.rs user/Observation.rs user/Practitioner.rs');
  const { posted } = await logIn(browser, first.url, await ownAccount('dr-lefevre', 'web-app'), 'stéthoscope 2026');
  const approval = await browser.follow(posted.location!);
  t.match(approval.text, /Cabinet &lt;Lefèvre&gt;/, 'the app by its name, escaped');
  t.same(offeredScopes(approval).sort(), ['user/Observation.rs', 'user/Patient.rs'], 'a scope beyond the registration is not even offered');
  const back = await browser.follow((await answer(browser, approval, 'approve', ['user/Observation.rs'])).location!, (url) => url.startsWith(redirectUri));
  const code = new URL(back.location!).searchParams.get('code')!;
  t.ok(code, 'a code');
  const exchange = { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: first.verifier };

  const wrong = await tokenRequest(exchange, basic('web-app', `${secret}x`));
  t.equal(wrong.status, 401, 'a wrong secret');
  t.equal(wrong.body.error, 'invalid_client');
  const none = await tokenRequest({ ...exchange, client_id: 'web-app' });
  t.equal(none.status, 401, 'no secret');
  const right = await tokenRequest(exchange, basic('web-app', secret));
  t.equal(right.status, 200, JSON.stringify(right.body));
  const claims = decodeJwt(right.body.access_token);
  t.equal(claims.scope, 'user/Patient.rs', 'the token carries what was approved, not the box left unticked nor what the registration does not cover');
  t.equal(claims.fhirUser, `Practitioner/${practitioner}`);
  t.equal(await fhirStatus(right.body.access_token, `Patient/${jeanne}`), 200);
  t.equal(await fhirStatus(right.body.access_token, `Observation?subject=Patient/${jeanne}`), 403, 'no Observation: not approved');

  // Asked again, for what was not approved; then approved, with client_secret_post.
  const second = authorizationRequest('web-app', redirectUri, 'openid fhirUser user/Patient.rs user/Observation.rs');
  const asked = await browser.follow(second.url);
  t.match(asked.text, /<title>Autorisation<\/title>/, 'a scope not approved before: asked again');
  const code2 = new URL((await browser.follow((await answer(browser, asked, 'approve')).location!, (url) => url.startsWith(redirectUri))).location!).searchParams.get('code')!;
  const posted2 = await tokenRequest({ grant_type: 'authorization_code', code: code2, redirect_uri: redirectUri, code_verifier: second.verifier, client_id: 'web-app', client_secret: secret });
  t.equal(posted2.status, 200, 'client_secret_post');
  t.equal(decodeJwt(posted2.body.access_token).scope, 'user/Patient.rs user/Observation.rs');
  const wrongPost = await tokenRequest({ grant_type: 'authorization_code', code: code2, redirect_uri: redirectUri, code_verifier: second.verifier, client_id: 'web-app', client_secret: 'not the secret' });
  t.equal(wrongPost.status, 401);
  t.equal(wrongPost.body.error, 'invalid_client');

  const third = authorizationRequest('web-app', redirectUri, 'openid fhirUser user/Patient.rs user/Observation.rs');
  const direct = await browser.follow(third.url, (url) => url.startsWith(redirectUri));
  t.match(direct.location ?? '', /code=/, 'everything approved before: straight back to the app with a code');
});

t.test('Deny on the approval page: access_denied to the app, no code', async (t) => {
  const redirectUri = `${appServer.url}/deny-callback`;
  await registerClient(database.db, { clientId: 'deny-app', scope: 'openid patient/*.rs', redirectUris: [redirectUri] });
  const browser = new Browser();
  const { posted } = await logIn(browser, authorizationRequest('deny-app', redirectUri, 'openid patient/*.rs').url, await ownAccount('jeanne', 'deny'), 'correct horse battery');
  const approval = await browser.follow(posted.location!);
  const back = await browser.follow((await answer(browser, approval, 'deny')).location!, (url) => url.startsWith(redirectUri));
  const answerUrl = new URL(back.location!);
  t.equal(answerUrl.searchParams.get('error'), 'access_denied');
  t.equal(answerUrl.searchParams.get('state'), 'st4te');
  t.notOk(answerUrl.searchParams.has('code'));
  const again = await browser.follow(authorizationRequest('deny-app', redirectUri, 'openid patient/*.rs').url);
  t.match(again.text, /<title>Autorisation<\/title>/, 'nothing was remembered: asked again');
});

t.test('prompt=none: silent with an approval remembered for the account and app, consent_required without', async (t) => {
  const redirectUri = `${appServer.url}/silent-callback`;
  await registerClient(database.db, { clientId: 'silent-app', scope: 'openid fhirUser launch/patient patient/*.rs', redirectUris: [redirectUri] });
  const silently = (scope: string) => {
    const request = authorizationRequest('silent-app', redirectUri, scope);
    const url = new URL(request.url);
    url.searchParams.set('prompt', 'none');
    return { url: url.href, verifier: request.verifier };
  };
  const backAt = (page: { location?: string }) => new URL(page.location ?? 'about:blank');
  const browser = new Browser();

  const noSession = backAt(await browser.go(silently('openid patient/*.rs').url));
  t.equal(noSession.searchParams.get('error'), 'login_required', 'nobody logged in: login_required');

  // Logged in, nothing approved yet for this app: consent_required, without a page.
  const { posted } = await logIn(browser, authorizationRequest('silent-app', redirectUri, 'openid launch/patient patient/*.rs').url, await ownAccount('jeanne', 'silent'), 'correct horse battery');
  const approval = await browser.follow(posted.location!);
  const notYet = backAt(await browser.go(silently('openid launch/patient patient/*.rs').url));
  t.equal(notYet.searchParams.get('error'), 'consent_required', 'no approval remembered: consent_required');
  t.notOk(notYet.searchParams.has('code'));

  // Approved once on the page (its interaction is still open): then prompt=none goes straight back with a code.
  const first = await browser.follow((await answer(browser, approval, 'approve')).location!, (url) => url.startsWith(redirectUri));
  t.ok(backAt(first).searchParams.get('code'), 'approved on the page');
  const request = silently('openid launch/patient patient/*.rs');
  const quiet = await browser.go(request.url);
  t.equal(quiet.status, 303, 'no page shown');
  const code = backAt(quiet).searchParams.get('code');
  t.ok(code, `an approval remembered: a code at once (${quiet.location})`);
  t.equal(backAt(quiet).searchParams.get('state'), 'st4te');
  const token = await tokenRequest({ grant_type: 'authorization_code', code: code!, redirect_uri: redirectUri, code_verifier: request.verifier, client_id: 'silent-app' });
  t.equal(token.status, 200, `the code is exchanged: ${token.body.error ?? ''}`);
  t.equal(token.body.patient, jeanne, 'with her launch context');
  t.equal(decodeJwt(token.body.access_token).scope, 'patient/*.rs');
  t.equal(await fhirStatus(token.body.access_token, `Patient/${jeanne}`), 200, 'a token that works');

  const more = backAt(await browser.go(silently('openid fhirUser launch/patient patient/*.rs').url));
  t.equal(more.searchParams.get('error'), 'consent_required', 'a scope not approved before (fhirUser): consent_required');
});

t.test("Patient/$erase: the patient's refresh token and remembered approval stop working, a pending launch naming them goes", async (t) => {
  const claire = await create({ resourceType: 'Patient', name: [{ family: 'Effacée', given: ['Claire'] }] });
  await registerAccount(database.db, { username: 'claire', password: 'à effacer bientôt', fhirUser: `Patient/${claire}`, patient: `Patient/${claire}` });
  const browser = new Browser();
  const { posted } = await logIn(browser, `${appServer.url}/launch`, 'claire', 'à effacer bientôt');
  const done = await browser.follow((await answer(browser, await browser.follow(posted.location!), 'approve')).location!);
  t.same(JSON.parse(done.text), { patient: claire }, 'her app reads her record');
  const { client, tokenResponse } = appServer.last;
  t.ok(tokenResponse.refresh_token, 'with a refresh token');
  const launch = await mintLaunch(await ehrToken(), { patient: `Patient/${claire}` });
  t.equal(launch.status, 200);

  const erased = await fetch(`${fhirBase}/Patient/${claire}/$erase`, { method: 'POST', headers: { authorization: `Bearer ${setup}` } });
  t.equal(erased.status, 200, await erased.text());

  const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokenResponse.refresh_token, client_id: 'dossier-app' });
  t.equal(refreshed.status, 400, 'her refresh token no longer works');
  t.equal(refreshed.body.error, 'invalid_grant');
  await t.rejects(client.refresh(), 'nor through fhirclient');
  const store = authorizationStore(database.db);
  t.notOk(await store.record('Approval', JSON.stringify(['claire', 'dossier-app'])), 'her approval is forgotten');
  t.notOk(await store.record('Launch', launch.body.launch), "the EHR's pending launch for her is gone");
  const relaunched = await new Browser().follow(`${appServer.url}/launch?iss=${encodeURIComponent(fhirBase)}&launch=${launch.body.launch}`);
  t.match(relaunched.url, /error=invalid_request/, 'and opens nothing');
  const login = await logIn(new Browser(), `${appServer.url}/launch`, 'claire', 'à effacer bientôt');
  t.equal(login.posted.status, 401, 'her account is gone');
});

// --- A second issuer, trusted by configuration only --------------------------------------------------------

t.test('a second issuer with its own keys, trusted by FHIR_AUTH_ISSUERS, opens /fhir; its keys do not make it the embedded one', async (t) => {
  const other = await openTestDatabase();
  const keys = [await generateIssuerKey()];
  await migrate(other.db);
  const otherStore = authorizationStore(other.db);
  const provider = createAuthorizationServer({ origin: otherOrigin, fhirBase, keys, store: otherStore });
  const idp: FastifyInstance = fastify();
  await idp.register(authorizationRoutes, { provider, store: otherStore, fhirBase });
  await idp.listen({ port: otherPort, host: '127.0.0.1' });
  t.teardown(async () => {
    await idp.close();
    await other.drop();
  });
  await registerClient(other.db, { clientId: 'lab-feed', scope: 'system/Patient.rs', jwks: { keys: [labJwk] } });
  const { status, body } = await clientCredentials('system/Patient.rs', await assertion('lab-feed', labKeys.privateKey, { aud: `${otherOrigin}/auth/token` }), `${otherOrigin}/auth/token`);
  t.equal(status, 200, JSON.stringify(body));
  t.equal(decodeJwt(body.access_token).iss, `${otherOrigin}/auth`);
  t.equal(await fhirStatus(body.access_token, `Patient/${jeanne}`), 200, 'the configured issuer\'s token is accepted');

  // The same keys, claiming the embedded issuer: refused (the embedded issuer's key is not theirs).
  const impostor = await new SignJWT({ scope: 'system/*.cruds', client_id: 'x' })
    .setProtectedHeader({ alg: 'ES256', kid: keys[0]!.kid })
    .setIssuer(`${origin}/auth`)
    .setAudience(fhirBase)
    .setExpirationTime('5m')
    .sign(await importJWK(keys[0]!.privateJwk as JWK, 'ES256'));
  t.equal(await fhirStatus(impostor, `Patient/${jeanne}`), 401);
});

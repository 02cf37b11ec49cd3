// SMART authentication (issue 17, item 1): every /fhir request but the CapabilityStatement needs a bearer
// token from a trusted issuer, for this server, in its validity period, signed with an accepted algorithm.
// Each attack below is answered 401 with WWW-Authenticate and an OperationOutcome: never 500, never accepted.
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLocalJWKSet, exportJWK, exportSPKI, generateKeyPair, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose';
import t, { type Test } from 'tap';
import { FHIR_JSON, json, startTestServer, TEST_AUDIENCE, type TestServer } from './helpers/app.ts';

/** A JWKS server on a port of its own: an external issuer's keys, which the test can change or break. */
async function jwksServer(): Promise<{ url: string; keys: JWK[]; status: number; server: Server }> {
  const state = { url: '', keys: [] as JWK[], status: 200, server: undefined as unknown as Server };
  state.server = createServer((_request, response) => {
    response.writeHead(state.status, { 'content-type': 'application/json' });
    response.end(state.status === 200 ? JSON.stringify({ keys: state.keys }) : '{"error":"down"}');
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}/jwks`;
  return state;
}

const EXTERNAL = 'https://idp.example.test';
const BROKEN = 'https://broken-idp.example.test';
const CLOSED = 'https://gone-idp.example.test';
const idp = await jwksServer();
const failing = await jwksServer();
failing.status = 500;
const closedPort = await jwksServer();
const closedUrl = closedPort.url;
await new Promise((resolve) => closedPort.server.close(resolve));
t.teardown(() => new Promise((resolve) => idp.server.close(() => failing.server.close(resolve))));

const rsa = await generateKeyPair('RS256', { extractable: true });
const rsaJwk = { ...(await exportJWK(rsa.publicKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' };
idp.keys.push(rsaJwk);

const server = await startTestServer(t, {
  authIssuers: [
    { issuer: EXTERNAL, jwksUri: idp.url },
    { issuer: BROKEN, jwksUri: failing.url },
    { issuer: CLOSED, jwksUri: closedUrl },
  ],
});
const patient = json(await server.inject({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': FHIR_JSON }, payload: { resourceType: 'Patient', name: [{ family: 'Cible' }] } }));

const now = () => Math.floor(Date.now() / 1000);

async function externalToken(claims: Record<string, unknown> = {}, options: { key?: CryptoKey; kid?: string; iss?: string } = {}): Promise<string> {
  // The standard claims first, then the test's own, which may replace them.
  return new SignJWT({ iss: options.iss ?? EXTERNAL, aud: TEST_AUDIENCE, iat: now(), exp: now() + 300, scope: 'system/*.rs', client_id: 'lab', ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: options.kid ?? 'idp-1' })
    .sign(options.key ?? rsa.privateKey);
}

const read = (s: TestServer, authorization?: string) =>
  s.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}`, headers: authorization === undefined ? {} : { authorization } }, { anonymous: authorization === undefined });

function refused(t: Test, response: Awaited<ReturnType<TestServer['inject']>>, reason: RegExp, error = 'invalid_token') {
  t.equal(response.statusCode, 401, '401');
  t.match(String(response.headers['www-authenticate']), new RegExp(`^Bearer realm="${TEST_AUDIENCE}", error="${error}"`), 'WWW-Authenticate names the error');
  const outcome = json(response);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.match(outcome.issue[0].diagnostics, reason);
  t.notMatch(response.body, /Cible/, 'nothing of the resource');
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

t.test('without a token: 401 with a bare challenge, an OperationOutcome, and no resource; metadata and discovery stay public', async (t) => {
  for (const [method, url] of [['GET', `/fhir/Patient/${patient.id}`], ['GET', '/fhir/Patient'], ['DELETE', `/fhir/Patient/${patient.id}`], ['POST', '/fhir'], ['GET', '/fhir/_history']] as const) {
    const response = await server.inject({ method, url }, { anonymous: true });
    t.equal(response.statusCode, 401, `${method} ${url}: 401`);
    t.equal(response.headers['www-authenticate'], `Bearer realm="${TEST_AUDIENCE}"`);
    t.equal(json(response).issue[0].code, 'login');
  }
  t.equal((await server.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}` })).statusCode, 200, 'the same read with a token: 200');
  const metadata = await server.inject({ method: 'GET', url: '/fhir/metadata' }, { anonymous: true });
  t.equal(metadata.statusCode, 200, 'metadata without a token');
  const security = json(metadata).rest[0].security;
  t.equal(security.service[0].coding[0].code, 'SMART-on-FHIR', 'which declares SMART on FHIR');
  const discovery = await server.inject({ method: 'GET', url: '/fhir/.well-known/smart-configuration' }, { anonymous: true });
  t.equal(discovery.statusCode, 200);
  const configuration = json(discovery);
  t.equal(configuration.issuer, 'http://localhost/auth', 'the embedded authorization server issues the ID tokens');
  t.ok(configuration.capabilities.includes('permission-v2'));
  t.same(configuration.grant_types_supported, ['authorization_code', 'client_credentials', 'refresh_token']);
  t.equal(configuration.token_endpoint, 'http://localhost/auth/token', 'its token endpoint (test/authorization-server.test.ts uses it)');
  t.equal((await server.inject({ method: 'GET', url: '/.well-known/smart-configuration' }, { anonymous: true })).statusCode, 200);
  const jwks = json(await server.inject({ method: 'GET', url: '/fhir/.well-known/jwks.json' }, { anonymous: true }));
  t.notOk(jwks.keys.some((key: JWK) => key.d !== undefined), 'the JWKS holds no private part');
  const { payload } = await jwtVerify(server.authorization.slice(7), createLocalJWKSet(jwks), { issuer: TEST_AUDIENCE, audience: TEST_AUDIENCE });
  t.equal(payload.scope, 'system/*.cruds', 'the tokens of npm run token verify against the published keys');
});

t.test('a malformed Authorization header: 401 invalid_request', async (t) => {
  refused(t, await read(server, 'Basic dXNlcjpwYXNz'), /Bearer/, 'invalid_request');
  refused(t, await read(server, 'Bearer'), /Bearer/, 'invalid_request');
});

t.test('a token of a trusted external issuer, through its JWKS URL: accepted', async (t) => {
  const response = await read(server, `Bearer ${await externalToken()}`);
  t.equal(response.statusCode, 200);
});

t.test('expired, not yet valid, wrong audience, wrong issuer: 401', async (t) => {
  refused(t, await read(server, `Bearer ${await externalToken({ exp: now() - 120 })}`), /expired/);
  t.equal((await read(server, `Bearer ${await externalToken({ exp: now() - 10 })}`)).statusCode, 200, 'within the clock skew: accepted');
  refused(t, await read(server, `Bearer ${await externalToken({ nbf: now() + 300 })}`), /nbf/);
  refused(t, await read(server, `Bearer ${await externalToken({ aud: 'https://other-server.example/fhir' })}`), /aud/);
  const stranger = await generateKeyPair('RS256');
  refused(t, await read(server, `Bearer ${await externalToken({}, { key: stranger.privateKey, iss: 'https://evil.example' })}`), /trusted issuer/);
});

t.test('a token without exp: 401', async (t) => {
  const token = await new SignJWT({ scope: 'system/*.rs' }).setProtectedHeader({ alg: 'RS256', kid: 'idp-1' }).setIssuer(EXTERNAL).setAudience(TEST_AUDIENCE).sign(rsa.privateKey);
  refused(t, await read(server, `Bearer ${token}`), /exp/);
});

t.test('a tampered payload (scopes raised, signature kept): 401', async (t) => {
  const [header, , signature] = (await externalToken({ scope: 'patient/Observation.rs', patient: 'other' })).split('.');
  const raised = b64({ iss: EXTERNAL, aud: TEST_AUDIENCE, exp: now() + 300, scope: 'system/*.cruds' });
  refused(t, await read(server, `Bearer ${header}.${raised}.${signature}`), /could not be verified/);
  const embedded = server.authorization.slice(7).split('.');
  const payload = JSON.parse(Buffer.from(embedded[1]!, 'base64url').toString());
  refused(t, await read(server, `Bearer ${embedded[0]}.${b64({ ...payload, scope: 'system/*.cruds', patient: undefined, exp: payload.exp + 1 })}.${embedded[2]}`), /could not be verified/);
});

t.test('alg none: 401', async (t) => {
  for (const alg of ['none', 'None', 'NONE']) {
    const token = `${b64({ alg, typ: 'JWT' })}.${b64({ iss: TEST_AUDIENCE, aud: TEST_AUDIENCE, exp: now() + 300, scope: 'system/*.cruds' })}.`;
    refused(t, await read(server, `Bearer ${token}`), /algorithm/);
  }
});

t.test('RS256 → HS256 key confusion (HMAC keyed with the public key): 401', async (t) => {
  const hs256 = (secret: string | Buffer, iss: string, kid: string) => {
    const head = `${b64({ alg: 'HS256', typ: 'JWT', kid })}.${b64({ iss, aud: TEST_AUDIENCE, exp: now() + 300, scope: 'system/*.cruds' })}`;
    return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
  };
  const pem = await exportSPKI(rsa.publicKey);
  refused(t, await read(server, `Bearer ${hs256(pem, EXTERNAL, 'idp-1')}`), /algorithm/);
  refused(t, await read(server, `Bearer ${hs256(JSON.stringify(rsaJwk), EXTERNAL, 'idp-1')}`), /algorithm/);
  const published = json(await server.inject({ method: 'GET', url: '/fhir/.well-known/jwks.json' }, { anonymous: true })).keys[0];
  refused(t, await read(server, `Bearer ${hs256(JSON.stringify(published), TEST_AUDIENCE, published.kid)}`), /algorithm/);
});

t.test('a kid the issuer does not publish: 401', async (t) => {
  const other = await generateKeyPair('RS256');
  refused(t, await read(server, `Bearer ${await externalToken({}, { key: other.privateKey, kid: 'idp-unknown' })}`), /key is not one of its issuer's|could not/);
  refused(t, await read(server, `Bearer ${await externalToken({}, { key: other.privateKey, kid: 'idp-1' })}`), /could not be verified/);
});

t.test("an issuer whose JWKS answers 500, or whose JWKS server is gone: 401, not 500, not accepted", async (t) => {
  refused(t, await read(server, `Bearer ${await externalToken({}, { iss: BROKEN })}`), /./);
  refused(t, await read(server, `Bearer ${await externalToken({}, { iss: CLOSED })}`), /./);
  t.equal((await read(server, server.authorization)).statusCode, 200, 'the server still serves valid tokens');
});

t.test('a token over 8 KB, or that is not a JWT: 401', async (t) => {
  refused(t, await read(server, `Bearer ${await externalToken({ padding: 'x'.repeat(9000) })}`), /longer/);
  refused(t, await read(server, 'Bearer abc.def.ghi'), /well-formed/);
});

t.test('a valid token without the scope: 403 with an OperationOutcome', async (t) => {
  const token = await server.token({ scope: 'system/Observation.rs' });
  const response = await read(server, `Bearer ${token}`);
  t.equal(response.statusCode, 403);
  t.equal(json(response).issue[0].code, 'forbidden');
  const openid = await server.token({ scope: 'openid fhirUser' });
  t.equal((await read(server, `Bearer ${openid}`)).statusCode, 403, 'scopes granting no resource access: 403');
});

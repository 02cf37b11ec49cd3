// Web hygiene (issue 17, item 5), tried as an attacker would: security headers on every answer, a Binary of
// an active type never rendered from the API's origin, no URL built from a Host header nobody vouched for,
// CORS only for the origins configured (preflights answered before authentication), a rate limit per client.
import t, { type Test } from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { configFromEnv, DEFAULT_RATE_LIMIT } from '../src/config.ts';
import { FHIR_JSON, json, startTestServer, TEST_AUDIENCE, type TestServer } from './helpers/app.ts';

const API_CSP = "default-src 'none'; frame-ancestors 'none'";
const ATTACKER = 'attacker.example';

// Each server costs seconds to start: one per configuration, shared by the tests below.
const server = await startTestServer(t);
const PUBLIC_BASE = 'https://dmp.example.fr/fhir';
const published = await startTestServer(t, { publicBaseUrl: PUBLIC_BASE });
const hosts = await startTestServer(t, { allowedHosts: ['dmp.example', 'localhost:8080', '[::1]'] });
const PROXY = '10.0.0.1';
const proxied = await startTestServer(t, { allowedHosts: ['dmp.example'], trustProxy: [PROXY] });
const APP = 'https://app.example';
const cors = await startTestServer(t, { corsOrigins: [APP, 'http://localhost:3000'] });
const limited = await startTestServer(t, { rateLimit: 3, corsOrigins: ['*'] });

/** The issue's one OperationOutcome, with its status and issue code. */
function assertOutcome(t: Test, res: LightMyRequestResponse, status: number, code: string): void {
  t.equal(res.statusCode, status, `status ${status}`);
  t.match(res.headers['content-type'], /^application\/fhir\+json/);
  const outcome = json(res);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.equal(outcome.issue[0].code, code);
}

/** Everything a client reads of an answer: where `attacker.example` must never be. */
const everything = (res: LightMyRequestResponse) => `${JSON.stringify(res.headers)}\n${res.body}`;

const binaryUpload = (target: TestServer, contentType: string, payload: string | Buffer) =>
  target.inject({ method: 'POST', url: '/fhir/Binary', payload, headers: { 'content-type': contentType } });

t.test('every answer carries the security headers, success or error, and no X-Powered-By', async (t) => {
  const created = json(await server.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient' }), headers: { 'content-type': FHIR_JSON } }));
  const answers: Array<[string, LightMyRequestResponse]> = [
    ['a read', await server.inject({ method: 'GET', url: `/fhir/Patient/${created.id}` })],
    ['a search', await server.inject({ method: 'GET', url: '/fhir/Patient' })],
    ['the CapabilityStatement', await server.inject({ method: 'GET', url: '/fhir/metadata' }, { anonymous: true })],
    ['SMART discovery', await server.inject({ method: 'GET', url: '/.well-known/smart-configuration' }, { anonymous: true })],
    ['the issuer keys', await server.inject({ method: 'GET', url: '/fhir/.well-known/jwks.json' }, { anonymous: true })],
    ['a 401', await server.inject({ method: 'GET', url: '/fhir/Patient' }, { anonymous: true })],
    ['a 404 of the router', await server.inject({ method: 'GET', url: '/fhir/Patient/nobody' })],
    ['a 404 outside /fhir', await server.inject({ method: 'GET', url: '/nothing-here' })],
    ['a URL that does not decode', await server.inject({ method: 'GET', url: '/fhir/Patient/%FF' })],
    ['a malformed body', await server.inject({ method: 'POST', url: '/fhir/Patient', payload: '{', headers: { 'content-type': FHIR_JSON } })],
    ['health', await server.inject({ method: 'GET', url: '/health' })],
  ];
  for (const [what, res] of answers) {
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
    t.equal(res.headers['referrer-policy'], 'no-referrer', `${what}: no referrer`);
    t.equal(res.headers['content-security-policy'], API_CSP, `${what}: loads and runs nothing, framed by nothing`);
    t.notOk('x-powered-by' in res.headers, `${what}: no X-Powered-By`);
    t.notOk('strict-transport-security' in res.headers, `${what}: no HSTS over plain HTTP`);
  }
  t.equal(answers[8]![1].statusCode, 400, 'the undecodable URL was refused before any route');
});

t.test('HSTS when clients come over TLS: PUBLIC_BASE_URL in https, or https through a trusted proxy; X-Forwarded-Proto from anyone else is ignored', async (t) => {
  const behindHttps = await published.inject({ method: 'GET', url: '/fhir/metadata' }, { anonymous: true });
  t.equal(behindHttps.headers['strict-transport-security'], 'max-age=31536000');

  const forwarded = (remoteAddress: string) => proxied.inject({ method: 'GET', url: '/fhir/metadata', remoteAddress, headers: { host: 'dmp.example', 'x-forwarded-proto': 'https' } }, { anonymous: true });
  t.equal((await forwarded(PROXY)).headers['strict-transport-security'], 'max-age=31536000', 'the trusted proxy says the client came over TLS');
  t.notOk('strict-transport-security' in (await forwarded('192.0.2.7')).headers, 'a client saying so itself is not believed');
  t.notOk('strict-transport-security' in (await server.inject({ method: 'GET', url: '/fhir/metadata', headers: { 'x-forwarded-proto': 'https' } }, { anonymous: true })).headers, 'nor without TRUST_PROXY');
});

t.test('a Binary of an active type is served raw as a sandboxed attachment: HTML, SVG, XML, JavaScript, unknown types', async (t) => {
  const active: Array<[string, string]> = [
    ['text/html', '<html><body><script>fetch("/fhir/Patient").then(r => r.text()).then(alert)</script></body></html>'],
    ['image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'],
    ['text/html; charset=utf-8', '<script>alert(1)</script>'],
    ['TEXT/HTML', '<script>alert(1)</script>'],
    ['application/xhtml+xml', '<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>'],
    ['application/xml', '<?xml-stylesheet type="text/xsl" href="#"?><x/>'],
    ['text/xml', '<x/>'],
    ['text/javascript', 'alert(1)'],
    ['application/javascript', 'alert(1)'],
    ['application/x-made-up', 'who knows'],
  ];
  for (const [contentType, content] of active) {
    const created = await binaryUpload(server, contentType, content);
    t.equal(created.statusCode, 201, `${contentType} stored`);
    const location = `/fhir/Binary/${json(created).id}`;
    for (const method of ['GET', 'HEAD'] as const) {
      const raw = await server.inject({ method, url: location });
      t.equal(raw.statusCode, 200);
      t.equal(raw.headers['content-type'], json(created).contentType, `${method} ${contentType}: in its own type`);
      t.equal(raw.headers['content-disposition'], 'attachment', `${method} ${contentType}: downloaded, not rendered`);
      t.match(raw.headers['content-security-policy'], /(^|; )sandbox(;|$)/, `${method} ${contentType}: sandboxed if rendered all the same`);
      t.match(raw.headers['content-security-policy'], /default-src 'none'/);
      t.equal(raw.headers['x-content-type-options'], 'nosniff');
      if (method === 'GET') t.equal(raw.body, content, 'the same bytes');
    }
  }

  // Sent as FHIR JSON with base64 data, it is served raw the same way.
  const html = await server.inject({
    method: 'POST',
    url: '/fhir/Binary',
    payload: JSON.stringify({ resourceType: 'Binary', contentType: 'text/html', data: Buffer.from('<script>alert(2)</script>').toString('base64') }),
    headers: { 'content-type': FHIR_JSON },
  });
  const id = json(html).id;
  const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: 'text/html' } });
  t.equal(raw.headers['content-disposition'], 'attachment');
  t.match(raw.headers['content-security-policy'], /(^|; )sandbox(;|$)/);
  const history = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}/_history/1` });
  t.equal(history.headers['content-disposition'], 'attachment', 'a version read raw too');

  // Read as a FHIR resource, it is JSON like any other: the API's policy, inline.
  const resource = await server.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: FHIR_JSON } });
  t.equal(json(resource).contentType, 'text/html');
  t.notOk('content-disposition' in resource.headers);
  t.equal(resource.headers['content-security-policy'], API_CSP);
});

t.test('a Binary of a passive type (PDF, images but SVG, plain text) is still served inline', async (t) => {
  const passive: Array<[string, Buffer]> = [
    ['application/pdf', Buffer.from('%PDF-1.7\n%âãÏÓ\n')],
    ['image/png', Buffer.from('89504e470d0a1a0a', 'hex')],
    ['image/jpeg', Buffer.from('ffd8ffe0', 'hex')],
    ['text/plain; charset=utf-8', Buffer.from('Compte rendu: RAS')],
  ];
  for (const [contentType, content] of passive) {
    const created = await binaryUpload(server, contentType, content);
    const raw = await server.inject({ method: 'GET', url: `/fhir/Binary/${json(created).id}` });
    t.equal(raw.statusCode, 200);
    t.equal(raw.headers['content-type'], json(created).contentType);
    t.notOk('content-disposition' in raw.headers, `${contentType}: shown inline`);
    t.notOk('content-security-policy' in raw.headers, `${contentType}: no policy that would keep the browser's own viewer from showing it`);
    t.equal(raw.headers['x-content-type-options'], 'nosniff', `${contentType}: never sniffed into something else`);
    t.ok(raw.rawPayload.equals(content), 'the same bytes');
  }
});

t.test('without PUBLIC_BASE_URL nor FHIR_ALLOWED_HOSTS, no URL is built from the Host header: the base is the tokens audience', async (t) => {
  const asAttacker = { host: ATTACKER, 'x-forwarded-host': ATTACKER, 'x-forwarded-proto': 'https' };
  const created = await server.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Hôte' }] }), headers: { ...asAttacker, 'content-type': FHIR_JSON } });
  t.equal(created.statusCode, 201);
  const id = json(created).id;
  t.equal(created.headers.location, `${TEST_AUDIENCE}/Patient/${id}/_history/1`, 'Location');
  await server.inject({ method: 'POST', url: '/fhir/Observation', payload: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'poids' }, subject: { reference: `Patient/${id}` } }), headers: { 'content-type': FHIR_JSON } });

  const answers: Array<[string, LightMyRequestResponse]> = [
    ['create', created],
    ['update', await server.inject({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: JSON.stringify({ resourceType: 'Patient', id, active: true }), headers: { ...asAttacker, 'content-type': FHIR_JSON } })],
    ['search', await server.inject({ method: 'GET', url: '/fhir/Patient?_count=1&_revinclude=Observation:subject', headers: asAttacker })],
    ['history', await server.inject({ method: 'GET', url: '/fhir/Patient/_history?_count=1', headers: asAttacker })],
    ['$everything', await server.inject({ method: 'GET', url: `/fhir/Patient/${id}/$everything?_count=1`, headers: asAttacker })],
    ['$summary', await server.inject({ method: 'GET', url: `/fhir/Patient/${id}/$summary`, headers: asAttacker })],
    [
      'a transaction',
      await server.inject({
        method: 'POST',
        url: '/fhir',
        payload: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: [{ fullUrl: 'urn:uuid:7d0f5a5e-3c1b-4a53-9d7e-2f1a2b3c4d5e', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } }] }),
        headers: { ...asAttacker, 'content-type': FHIR_JSON },
      }),
    ],
    ['the CapabilityStatement', await server.inject({ method: 'GET', url: '/fhir/metadata', headers: asAttacker }, { anonymous: true })],
    ['SMART discovery', await server.inject({ method: 'GET', url: '/.well-known/smart-configuration', headers: asAttacker }, { anonymous: true })],
    ['SMART discovery below the base', await server.inject({ method: 'GET', url: '/fhir/.well-known/smart-configuration', headers: asAttacker }, { anonymous: true })],
    ['a 401 and its WWW-Authenticate realm', await server.inject({ method: 'GET', url: '/fhir/Patient', headers: asAttacker }, { anonymous: true })],
  ];
  for (const [what, res] of answers) {
    t.ok(res.statusCode < 500, `${what}: answered (${res.statusCode})`);
    t.notOk(everything(res).includes(ATTACKER), `${what}: nothing names ${ATTACKER}`);
  }
  const search = json(answers[2]![1]);
  t.ok(search.link.every((link: { url: string }) => link.url.startsWith(`${TEST_AUDIENCE}/Patient?`)), 'search links on the base');
  t.ok(search.entry.every((entry: { fullUrl: string }) => entry.fullUrl.startsWith(`${TEST_AUDIENCE}/`)), 'fullUrls on the base');
  t.match(json(answers[4]![1]).link.find((link: { relation: string }) => link.relation === 'next').url, new RegExp(`^${TEST_AUDIENCE}/Patient/${id}/\\$everything\\?`));
  t.equal(json(answers[7]![1]).implementation.url, TEST_AUDIENCE);
  t.equal(json(answers[8]![1]).issuer, `${new URL(TEST_AUDIENCE).origin}/auth`);
  t.match(answers[10]![1].headers['www-authenticate'], `realm="${TEST_AUDIENCE}"`);

  const behindProxy = await published.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient' }), headers: { ...asAttacker, 'content-type': FHIR_JSON } });
  t.ok(behindProxy.headers.location?.startsWith(`${PUBLIC_BASE}/Patient/`), 'PUBLIC_BASE_URL, whatever the Host');
});

t.test('FHIR_ALLOWED_HOSTS: the base is built from a listed Host, any other is refused 400 before anything is done', async (t) => {
  const create = (host: string, extra: Record<string, string> = {}) =>
    hosts.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient' }), headers: { host, 'content-type': FHIR_JSON, ...extra } });

  t.match((await create('dmp.example')).headers.location, /^http:\/\/dmp\.example\/fhir\/Patient\//, 'a listed name');
  t.match((await create('DMP.example:9443')).headers.location, /^http:\/\/dmp\.example:9443\/fhir\/Patient\//, 'a name listed without a port, on any port');
  t.match((await create('localhost:8080')).headers.location, /^http:\/\/localhost:8080\/fhir\/Patient\//, 'a host:port listed');
  t.match((await create('[::1]:8080')).headers.location, /^http:\/\/\[::1\]:8080\/fhir\/Patient\//, 'an IPv6 address');
  t.match((await create('dmp.example', { 'x-forwarded-host': ATTACKER })).headers.location, /^http:\/\/dmp\.example\/fhir\//, 'X-Forwarded-Host ignored without TRUST_PROXY');

  for (const host of [ATTACKER, 'localhost:9090', 'dmp.example.attacker.example', 'evil.dmp.example', 'dmp.example:80@attacker.example']) {
    const refused = await create(host);
    assertOutcome(t, refused, 400, 'security');
    t.notOk(everything(refused).includes('attacker'), `${host}: not echoed`);
  }
  assertOutcome(t, await hosts.inject({ method: 'GET', url: '/fhir/metadata', headers: { host: ATTACKER } }, { anonymous: true }), 400, 'security');
  assertOutcome(t, await hosts.inject({ method: 'GET', url: '/fhir/Patient', headers: { host: ATTACKER } }, { anonymous: true }), 400, 'security');
  t.equal((await hosts.inject({ method: 'GET', url: '/health', headers: { host: '10.1.2.3:8080' } })).statusCode, 200, 'health probes by address are answered');

  // Behind a trusted proxy, the Host it forwards is the one checked.
  const forwarded = (forwardedHost: string) =>
    proxied.inject({ method: 'POST', url: '/fhir/Patient', remoteAddress: PROXY, payload: JSON.stringify({ resourceType: 'Patient' }), headers: { host: 'backend:8080', 'x-forwarded-host': forwardedHost, 'x-forwarded-proto': 'https', 'content-type': FHIR_JSON } });
  t.match((await forwarded('dmp.example')).headers.location, /^https:\/\/dmp\.example\/fhir\/Patient\//);
  assertOutcome(t, await forwarded(ATTACKER), 400, 'security');
});

t.test('CORS for the configured origins: preflights answered before authentication, the FHIR headers allowed and exposed', async (t) => {
  const preflight = (url: string, origin = APP, requestHeaders = 'authorization, content-type, if-match, prefer') =>
    cors.inject({ method: 'OPTIONS', url, headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': requestHeaders } }, { anonymous: true });

  for (const url of ['/fhir/Patient/123', '/fhir', '/fhir/metadata', '/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration']) {
    const answer = await preflight(url);
    t.equal(answer.statusCode, 204, `${url}: preflight answered without a token`);
    t.equal(answer.headers['access-control-allow-origin'], APP);
    t.match(answer.headers['access-control-allow-methods'], /\bPUT\b/);
    for (const header of ['Authorization', 'Content-Type', 'If-Match', 'If-None-Exist', 'If-None-Match', 'If-Modified-Since', 'Prefer']) {
      t.ok(String(answer.headers['access-control-allow-headers']).split(', ').includes(header), `${url}: ${header} allowed`);
    }
    t.ok(Number(answer.headers['access-control-max-age']) > 0, 'kept a while');
    t.notOk('access-control-allow-credentials' in answer.headers, 'no cookies: the token goes in Authorization');
    t.equal(answer.headers['x-content-type-options'], 'nosniff');
  }
  t.equal((await preflight('/fhir/Patient', 'http://localhost:3000')).headers['access-control-allow-origin'], 'http://localhost:3000', 'each listed origin');

  const read = await cors.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient' }), headers: { origin: APP, 'content-type': FHIR_JSON } });
  t.equal(read.statusCode, 201);
  t.equal(read.headers['access-control-allow-origin'], APP);
  t.match(read.headers.vary, /Origin/i, 'caches keep answers per origin');
  const exposed = String(read.headers['access-control-expose-headers']).split(', ');
  for (const header of ['Location', 'ETag', 'Last-Modified', 'Content-Location', 'WWW-Authenticate']) t.ok(exposed.includes(header), `${header} exposed`);
  const refused = await cors.inject({ method: 'GET', url: '/fhir/Patient', headers: { origin: APP } }, { anonymous: true });
  t.equal(refused.statusCode, 401, 'a request without a token is refused as ever');
  t.equal(refused.headers['access-control-allow-origin'], APP, 'in a way the app can read (WWW-Authenticate exposed)');
  t.equal((await cors.inject({ method: 'GET', url: '/.well-known/smart-configuration', headers: { origin: APP } }, { anonymous: true })).headers['access-control-allow-origin'], APP, 'discovery');
  t.equal(json(await cors.inject({ method: 'GET', url: '/fhir/metadata' }, { anonymous: true })).rest[0].security.cors, true, 'the CapabilityStatement says so');

  const evil = 'https://evil.example';
  const foreignPreflight = await preflight('/fhir/Patient', evil);
  t.notOk('access-control-allow-origin' in foreignPreflight.headers, 'an origin not listed is not allowed');
  t.notOk('access-control-allow-origin' in (await cors.inject({ method: 'GET', url: '/fhir/Patient', headers: { origin: evil } })).headers);
  t.notOk('access-control-allow-origin' in (await cors.inject({ method: 'GET', url: '/fhir/Patient', headers: { origin: 'https://app.example.evil.example' } })).headers, 'origins compared whole');
  t.notOk('access-control-allow-origin' in (await cors.inject({ method: 'GET', url: '/health', headers: { origin: APP } })).headers, 'health is no CORS resource');
  t.notOk('access-control-allow-origin' in (await cors.inject({ method: 'GET', url: '/fhir/Patient' })).headers, 'no Origin, no CORS headers');
  const plainOptions = await cors.inject({ method: 'OPTIONS', url: '/fhir/Patient', headers: { origin: APP } });
  assertOutcome(t, plainOptions, 405, 'not-supported');

  const any = await limited.inject({ method: 'OPTIONS', url: '/fhir/Patient', headers: { origin: evil, 'access-control-request-method': 'GET' } }, { anonymous: true });
  t.equal(any.statusCode, 204);
  t.equal(any.headers['access-control-allow-origin'], '*', '* when configured so');
});

t.test('no CORS by default: no CORS headers, a preflight is an unauthenticated request', async (t) => {
  const answer = await server.inject({ method: 'GET', url: '/fhir/Patient', headers: { origin: 'https://app.example' } });
  t.equal(answer.statusCode, 200);
  t.notOk('access-control-allow-origin' in answer.headers);
  const preflight = await server.inject({ method: 'OPTIONS', url: '/fhir/Patient', headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' } }, { anonymous: true });
  assertOutcome(t, preflight, 401, 'login');
  t.notOk('access-control-allow-origin' in preflight.headers);
  t.equal(json(await server.inject({ method: 'GET', url: '/fhir/metadata' }, { anonymous: true })).rest[0].security.cors, false);
});

t.test('a rate limit per client: 429 with Retry-After and an OperationOutcome once over it, other clients unaffected', async (t) => {
  const as = async (request: { clientId?: string; fhirUser?: string }) => `Bearer ${await limited.token(request)}`;
  const appA = await as({ clientId: 'app-a' });
  const get = (authorization?: string, remoteAddress = '127.0.0.1', url = '/fhir/Patient') =>
    limited.inject({ method: 'GET', url, remoteAddress, headers: authorization ? { authorization } : {} }, { anonymous: authorization === undefined });

  for (let i = 0; i < 3; i++) {
    const allowed = await get(appA);
    t.equal(allowed.statusCode, 200, `request ${i + 1} of 3`);
    t.equal(allowed.headers['x-ratelimit-remaining'], String(2 - i));
  }
  const throttled = await get(appA);
  assertOutcome(t, throttled, 429, 'throttled');
  const retryAfter = Number(throttled.headers['retry-after']);
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After in seconds (${throttled.headers['retry-after']})`);
  t.equal(throttled.headers['x-content-type-options'], 'nosniff');
  assertOutcome(t, await get(appA, '192.0.2.9'), 429, 'throttled');
  t.pass('the same token from another address is the same client');

  t.equal((await get(await as({ clientId: 'app-b' }))).statusCode, 200, 'another client has its own budget');
  t.equal((await get(await as({ clientId: 'app-a', fhirUser: 'Practitioner/7' }))).statusCode, 200, 'so has another user of the same app');

  // Without a token (the CapabilityStatement, discovery), each address has its budget.
  for (let i = 0; i < 3; i++) t.equal((await get(undefined, '192.0.2.1', '/fhir/metadata')).statusCode, 200);
  assertOutcome(t, await get(undefined, '192.0.2.1', '/.well-known/smart-configuration'), 429, 'throttled');
  t.equal((await get(undefined, '192.0.2.2', '/fhir/metadata')).statusCode, 200, 'another address is not held back');
  // A request without a valid token is refused before it is counted: it reaches nothing.
  for (let i = 0; i < 5; i++) assertOutcome(t, await get(undefined, '192.0.2.3', '/fhir/Patient'), 401, 'login');
});

t.test('configuration: the variables read, and refused when malformed', async (t) => {
  const defaults = configFromEnv({});
  t.same(defaults.corsOrigins, [], 'no CORS by default');
  t.same(defaults.allowedHosts, []);
  t.equal(defaults.rateLimit, DEFAULT_RATE_LIMIT);
  t.equal(defaults.rateLimit, 6000);
  t.equal(defaults.trustProxy, undefined, 'X-Forwarded-* ignored by default');

  const set = configFromEnv({ FHIR_CORS_ORIGINS: 'https://app.example, http://localhost:3000/', FHIR_ALLOWED_HOSTS: 'DMP.example,localhost:8080,[::1]', FHIR_RATE_LIMIT: '0', TRUST_PROXY: '10.0.0.0/8, loopback' });
  t.same(set.corsOrigins, ['https://app.example', 'http://localhost:3000']);
  t.same(set.allowedHosts, ['dmp.example', 'localhost:8080', '[::1]']);
  t.equal(set.rateLimit, 0, '0 turns the limit off');
  t.same(set.trustProxy, ['10.0.0.0/8', 'loopback']);
  t.same(configFromEnv({ FHIR_CORS_ORIGINS: '*' }).corsOrigins, ['*']);

  for (const [name, value] of [
    ['FHIR_CORS_ORIGINS', '*, https://app.example'],
    ['FHIR_CORS_ORIGINS', 'https://app.example/path'],
    ['FHIR_CORS_ORIGINS', 'app.example'],
    ['FHIR_CORS_ORIGINS', 'javascript:alert(1)'],
    ['FHIR_ALLOWED_HOSTS', 'https://dmp.example'],
    ['FHIR_ALLOWED_HOSTS', 'dmp.example/fhir'],
    ['FHIR_RATE_LIMIT', 'lots'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '2'],
  ] as const) {
    t.throws(() => configFromEnv({ [name]: value }), new RegExp(name), `${name}=${value} refused`);
  }
});

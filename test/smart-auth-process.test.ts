// SMART on by default, as `npm start` runs the server: `npm run token` prints a token the server on the same
// DATABASE_URL accepts, without one the server answers 401; FHIR_AUTH=off serves anyone, says so loudly at
// start, and then listens on 127.0.0.1 unless HOST says otherwise.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { createScratchStore, freePort, logEntries, startServerProcess } from './helpers/server-process.ts';

const PROJECT_ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);

t.test('npm run token prints a token the server on the same store accepts; without it, 401', async (t) => {
  const store = await createScratchStore('token-cli');
  t.teardown(() => store.drop());
  const port = await freePort();
  // On the embedded PGlite store the token is made while no server holds the directory.
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/token.ts', '--scope', 'system/*.cruds', '--user', 'Practitioner/7', '--expires', '600'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: store.url, PORT: String(port), PUBLIC_BASE_URL: '', LOG_LEVEL: 'silent' },
  });
  const token = stdout.trim();
  t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a compact JWT');
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
  t.equal(claims.aud, `http://localhost:${port}/fhir`, 'for the server on this port');
  t.equal(claims.fhirUser, 'Practitioner/7');
  t.ok(claims.exp - claims.iat <= 600);

  const server = await startServerProcess(store.url, { port });
  t.teardown(() => server.stop());
  const anonymous = await fetch(`${server.base}/fhir/Patient`);
  t.equal(anonymous.status, 401, 'no token: 401');
  t.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
  const created = await fetch(`${server.base}/fhir/Patient`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Jeton' }] }),
  });
  t.equal(created.status, 201, 'with the printed token: created');
  t.equal((await fetch(`${server.base}/fhir/metadata`)).status, 200, 'metadata stays public');
});

t.test('FHIR_AUTH=off: anyone is served, a loud warning at start, and the server listens on 127.0.0.1 by default', async (t) => {
  const store = await createScratchStore('auth-off');
  t.teardown(() => store.drop());
  const server = await startServerProcess(store.url, { env: { FHIR_AUTH: 'off', HOST: '', LOG_LEVEL: 'info' } });
  t.teardown(() => server.stop());
  const warning = logEntries(server.logs).find((entry) => entry.level === 40 && /FHIR_AUTH=off/.test(entry.msg));
  t.ok(warning, 'a warning names FHIR_AUTH=off');
  t.match(warning?.msg, /NO AUTHENTICATION/);
  t.ok(server.logs.some((line) => line.includes('Server listening at http://127.0.0.1:')), 'listening on 127.0.0.1 only');
  t.notOk(server.logs.some((line) => line.includes('Server listening at http://0.0.0.0')));
  const response = await fetch(`${server.base}/fhir/Patient`);
  t.equal(response.status, 200, 'no token needed');
  const metadata = await (await fetch(`${server.base}/fhir/metadata`)).json();
  t.notOk(metadata.rest[0].security, 'and the CapabilityStatement claims no security');
  t.equal((await fetch(`${server.base}/fhir/.well-known/smart-configuration`)).status, 404, 'nor SMART discovery');
});

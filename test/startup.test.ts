/**
 * Start-up of the real server process: each step logged with its duration, and a port already in use
 * reported at once, as one fatal line, before the seconds the other steps take. On an in-memory PGlite,
 * so it runs the same on both suite runs.
 */
import { createServer } from 'node:net';
import t from 'tap';
import { freePort, logEntries, spawnServerProcess, startServerProcess } from './helpers/server-process.ts';

t.setTimeout(300_000);

// The validator is built once the server listens, between requests (DeferredValidator).
const STEPS = ['check port', 'master key', 'open store', 'load modules', 'search registry', 'migrations', 'sweep stale uploads', 'stored definitions', 'issuer keys', 'sweep expired authorizations', 'routes', 'listen', 'validator and profiles (after listening)'];

t.test('a start logs each step with its duration, in order', async (t) => {
  const server = await startServerProcess('memory://', { env: { LOG_LEVEL: 'info' } });
  t.teardown(() => server.stop());
  // The server answers before its validator is built: wait for that last step's line.
  const last = STEPS[STEPS.length - 1];
  for (let waited = 0; waited < 120_000 && !logEntries(server.logs).some((entry) => entry.step === last); waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
  const steps = logEntries(server.logs).filter((entry) => typeof entry.step === 'string' && typeof entry.ms === 'number');
  t.same(steps.map((entry) => entry.step), STEPS, 'every step, once, in order');
  t.ok(steps.every((entry) => entry.msg === `start-up: ${entry.step}` && entry.ms >= 0), 'each says what it was and how long it took');
  t.comment(steps.map((entry) => `${entry.step} ${entry.ms} ms`).join(', '));
});

t.test('a port already in use: the server exits at once with status 1 and one clear fatal line, no stack trace', async (t) => {
  const port = await freePort();
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => holder.close(resolve)));

  const server = await spawnServerProcess('memory://', { env: { PORT: String(port), LOG_LEVEL: 'info' } });
  t.teardown(() => server.stop());
  const { code } = await server.exited;
  t.equal(code, 1, 'exit status 1');
  const entries = logEntries(server.logs);
  const fatal = entries.filter((entry) => entry.level === 60);
  t.same(fatal.map((entry) => entry.msg), [`port ${port} on 127.0.0.1 is already in use: stop what listens there or set PORT to another port`], 'one fatal line saying so');
  t.notMatch(server.logs.join('\n'), /\n\s+at /, 'no stack trace');
  t.same(entries.filter((entry) => typeof entry.step === 'string' && entry.level === 30).map((entry) => entry.step), [], 'before any other start-up step');
});

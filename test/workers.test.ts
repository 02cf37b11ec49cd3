import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { onPostgres } from './helpers/app.ts';
import { createScratchStore, getJson, postJson, startServerProcess } from './helpers/server-process.ts';

/** Live child processes of `pid`, from /proc (the servers a WORKERS primary runs). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the parenthesised command name: state, ppid, …
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') children.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return children;
}

/** Polls `condition`; the limit is generous because a replacement server builds its validator first, slowly on a busy machine. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 150_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

if (onPostgres) {
  t.test('WORKERS=2 runs two server processes on one port, replaces one that dies, and stops them all on SIGTERM', async (t) => {
    const store = await createScratchStore('workers');
    t.teardown(() => store.drop());
    const server = await startServerProcess(store.url, { env: { WORKERS: '2' } });
    t.teardown(() => server.stop());
    const primary = server.child.pid!;
    t.ok(await until(() => childrenOf(primary).length === 2), 'two server processes under the primary');

    // Whichever process answers, they share one store: what one created, the others read.
    const created = await postJson(`${server.base}/fhir/Patient`, { resourceType: 'Patient', name: [{ family: 'Ouvrier' }] });
    t.equal(created.status, 201);
    for (let i = 0; i < 6; i++) t.equal((await getJson(`${server.base}/fhir/Patient/${created.body.id}`)).status, 200);

    const [victim] = childrenOf(primary);
    process.kill(victim!, 'SIGKILL');
    t.ok(
      await until(() => {
        const now = childrenOf(primary);
        return now.length === 2 && !now.includes(victim!);
      }),
      'the dead process is replaced',
    );
    t.ok(await until(() => fetch(`${server.base}/health`).then((r) => r.ok, () => false)), 'still serving');
    const workers = childrenOf(primary);

    server.child.kill('SIGTERM');
    const { code } = await server.exited;
    t.equal(code, 0, 'the primary exits cleanly once its servers have', { logs: server.logs.slice(-10) });
    t.same(workers.filter((pid) => existsProcess(pid)), [], 'no server process outlives it');
  });
} else {
  t.test('WORKERS=2 on the embedded PGlite store is refused at start with the reason', async (t) => {
    const store = await createScratchStore('workers');
    t.teardown(() => store.drop());
    const error = await startServerProcess(store.url, { env: { WORKERS: '2' } }).then(
      () => undefined,
      (e: Error) => e,
    );
    t.ok(error, 'the server does not start');
    t.match(error?.message, /WORKERS > 1 needs DATABASE_URL=postgres/);
  });
}

function existsProcess(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

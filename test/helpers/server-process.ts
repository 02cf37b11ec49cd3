/**
 * Real server processes for the tests that need one (`node --import tsx src/main.ts`, as `npm start` runs it),
 * and scratch stores for them: a fresh PostgreSQL database (the server's tables live in its default schema,
 * so each test gets a database rather than a schema) or a PGlite data directory in a temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { onPostgres, TEST_DATABASE_URL } from './app.ts';

const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ScratchStore {
  /** DATABASE_URL for the server: `postgres://…/<fresh database>` or a PGlite data directory. */
  url: string;
  kind: 'postgres' | 'pglite';
  drop(): Promise<void>;
}

/** On the PostgreSQL run a new database on the suite's server (dropped by `drop`); otherwise a PGlite directory. */
export async function createScratchStore(label: string): Promise<ScratchStore> {
  if (!onPostgres) {
    const dir = mkdtempSync(join(tmpdir(), `dossier-${label}-`));
    return { url: join(dir, 'pglite'), kind: 'pglite', drop: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `dossier_${label.replace(/[^a-z0-9]/g, '_')}_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    kind: 'postgres',
    async drop() {
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        // FORCE: a killed server's connections may linger until PostgreSQL notices they are gone.
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

export interface ServerProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>`; the FHIR API is under `${base}/fhir`. */
  base: string;
  logs: string[];
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM and wait for the exit (no-op once exited). */
  stop(): Promise<void>;
}

/**
 * Spawns the server on `databaseUrl` and waits until GET /health answers 200. Building the profile validator
 * takes seconds of CPU, more on a busy machine: `healthTimeoutMs` bounds the wait (default 150 s).
 */
export async function startServerProcess(databaseUrl: string, options: { env?: Record<string, string>; healthTimeoutMs?: number } = {}): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  child.stdout!.on('data', (chunk) => logs.push(...String(chunk).split('\n').filter(Boolean)));
  child.stderr!.on('data', (chunk) => logs.push(String(chunk)));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    }),
  );
  const base = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    child,
    base,
    logs,
    exited,
    async stop() {
      if (done) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
  const deadline = Date.now() + (options.healthTimeoutMs ?? 150_000);
  while (Date.now() < deadline && !done) {
    const ok = await fetch(`${base}/health`).then((r) => r.ok, () => false);
    if (ok) return server;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  if (!done) {
    child.kill('SIGKILL');
    await exited;
  }
  throw new Error(`the server on ${databaseUrl} did not become healthy:\n${logs.join('\n')}`);
}

/** POSTs `body` as FHIR JSON and returns status and parsed body (undefined when not JSON). */
export async function postJson(url: string, body: unknown, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json', ...init.headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed };
}

export async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { headers: { accept: 'application/fhir+json' } });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** Live child processes of `pid`, from /proc (the servers a WORKERS primary runs). */
export function childrenOf(pid: number): number[] {
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

/** Whether `pid` is a live (not zombie) process. */
export function existsProcess(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

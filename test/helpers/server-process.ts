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
import { embeddedIssuerKeysFor, signEmbeddedToken } from '../../scripts/lib/embedded-token.ts';
import type { IssuerKey } from '../../src/store/issuer-keys.ts';
import { DEFAULT_TEST_SCOPE, onPostgres, TEST_DATABASE_URL, TEST_MASTER_KEY } from './app.ts';

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
export async function startServerProcess(databaseUrl: string, options: { env?: Record<string, string>; healthTimeoutMs?: number; port?: number } = {}): Promise<ServerProcess> {
  const server = await spawnServerProcess(databaseUrl, options);
  await untilHealthy(server, options.healthTimeoutMs);
  return server;
}

/**
 * The token of each spawned server, by its origin: made as `npm run token` makes it (the embedded issuer's
 * key in the server's database, audience http://localhost:$PORT/fhir), before the server starts (a PGlite
 * directory belongs to the server once it runs), else at first use (a PostgreSQL that was down then).
 */
interface ServerToken {
  databaseUrl: string;
  port: number;
  keys?: IssuerKey[];
  token?: string;
}

const serverTokens = new Map<string, ServerToken>();

async function readIssuerKeys(entry: ServerToken): Promise<void> {
  // An in-memory store is the server's alone: no other process can read its key.
  if (entry.databaseUrl.startsWith('memory://')) return;
  entry.keys ??= await embeddedIssuerKeysFor(entry.databaseUrl).catch(() => undefined);
}

async function mintServerToken(entry: ServerToken): Promise<void> {
  await readIssuerKeys(entry);
  if (entry.keys) entry.token ??= await signEmbeddedToken(entry.keys, { audience: `http://localhost:${entry.port}/fhir`, scope: DEFAULT_TEST_SCOPE, clientId: 'dossier-tests' });
}

/** `{ authorization: 'Bearer …' }` for a request to a spawned server at `url` (none for another URL). */
export async function authHeaders(url: string): Promise<Record<string, string>> {
  const entry = serverTokens.get(new URL(url).origin);
  if (!entry) return {};
  await mintServerToken(entry);
  return entry.token ? { authorization: `Bearer ${entry.token}` } : {};
}

/** Spawns the server on `databaseUrl` on a free port, without waiting for it to serve. */
export async function spawnServerProcess(databaseUrl: string, options: { env?: Record<string, string>; port?: number } = {}): Promise<ServerProcess> {
  const entry: ServerToken = { databaseUrl, port: 0 };
  // The key is read before a port is chosen: opening a store takes seconds, in which a port found free may be
  // taken by another suite's server, whose answers this one's client would then get.
  await readIssuerKeys(entry);
  const port = options.port ?? (await freePort());
  entry.port = port;
  serverTokens.set(`http://127.0.0.1:${port}`, entry);
  await mintServerToken(entry);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', FHIR_MASTER_KEY: TEST_MASTER_KEY, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  child.stdout!.on('data', (chunk) => logs.push(...String(chunk).split('\n').filter(Boolean)));
  child.stderr!.on('data', (chunk) => logs.push(String(chunk)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    base: `http://127.0.0.1:${port}`,
    logs,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Waits until the server's GET /health answers 200; kills it and throws, with its logs, if it never does. */
export async function untilHealthy(server: ServerProcess, timeoutMs = 150_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const done = () => server.child.exitCode !== null || server.child.signalCode !== null;
  while (Date.now() < deadline && !done()) {
    const ok = await fetch(`${server.base}/health`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  if (!done()) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  throw new Error(`the server on ${server.base} did not become healthy:\n${server.logs.join('\n')}`);
}

/** The server's log lines that are pino JSON, parsed. */
export function logEntries(logs: string[]): Array<Record<string, any>> {
  return logs.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, any>];
    } catch {
      return [];
    }
  });
}

/**
 * Resolves once `count` of the server's log lines satisfy `matches`, checked as each line arrives. The
 * limit is only there so that a server that never logs them fails the test; a busy machine may take long.
 */
export function waitForLogLines(server: ServerProcess, matches: (line: string) => boolean, count: number, limitMs = 150_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const stdout = server.child.stdout!;
    const finish = (error?: Error) => {
      clearTimeout(timer);
      stdout.off('data', check);
      if (error) reject(error);
      else resolve();
    };
    // Registered after startServerProcess's own listener, so `logs` already holds the chunk this sees.
    const check = () => {
      if (server.logs.filter(matches).length >= count) finish();
    };
    const timer = setTimeout(() => finish(new Error(`fewer than ${count} matching log lines after ${limitMs} ms:\n${server.logs.slice(-20).join('\n')}`)), limitMs);
    stdout.on('data', check);
    check();
  });
}

/** POSTs `body` as FHIR JSON and returns status and parsed body (undefined when not JSON). */
export async function postJson(url: string, body: unknown, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json', ...(await authHeaders(url)), ...init.headers },
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
  const response = await fetch(url, { headers: { accept: 'application/fhir+json', ...(await authHeaders(url)) } });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

/** Polls `condition` every `pollMs` until it holds (true) or `timeoutMs` has passed (false). */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 150_000, pollMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return false;
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

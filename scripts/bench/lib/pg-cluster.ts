import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The newest PostgreSQL installed the Debian way (CI installs whichever version the distribution has). */
function postgresBin(): string | undefined {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)) : [];
  const newest = versions.sort((a, b) => Number(a) - Number(b)).pop();
  return newest === undefined ? undefined : `/usr/lib/postgresql/${newest}/bin`;
}

export interface Cluster {
  url: string;
  /** Stops the server and deletes the cluster. */
  stop(): void;
  /** Stops the server as a crash would (`pg_ctl -m immediate`: connections cut, no checkpoint). */
  crash(): Promise<void>;
  /** Starts the server again on the same port after `crash`, resolving once it accepts connections. */
  restart(): Promise<void>;
}

/** A port nobody listens on right now (the kernel's pick for port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A shell command run as the postgres user when we are root: initdb refuses to run as root. */
function postgresCommand(command: string): string[] {
  return process.getuid?.() === 0 ? ['su', 'postgres', '-s', '/bin/bash', '-c', command] : ['bash', '-c', command];
}

function asPostgres(command: string): void {
  const argv = postgresCommand(command);
  execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** asPostgres without blocking the event loop: what else the process does (a test's load) goes on meanwhile. */
async function asPostgresAsync(command: string): Promise<void> {
  const argv = postgresCommand(command);
  await promisify(execFile)(argv[0]!, argv.slice(1));
}

/**
 * Starts a PostgreSQL cluster (15 where CI and the benchmarks' machine have it) in a temporary directory,
 * trusting local connections; `stop` deletes it. `settings` are extra server settings (`-c name=value`),
 * e.g. bulk-load tuning; none by default.
 */
export async function startThrowawayCluster(settings: Record<string, string> = {}): Promise<Cluster> {
  const pgBin = postgresBin();
  if (pgBin === undefined || !existsSync(`${pgBin}/initdb`)) throw new Error('PostgreSQL not found in /usr/lib/postgresql/*/bin; install it (or set BENCH_DATABASE_URL for a benchmark)');
  const dir = mkdtempSync(join(tmpdir(), 'dossier-bench-pg-'));
  if (process.getuid?.() === 0) {
    const postgresUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, postgresUid, -1);
  }
  const port = await freePort();
  const stop = () => {
    try {
      asPostgres(`${pgBin}/pg_ctl -D ${dir}/data -m fast -w stop`);
    } catch {
      // Not running (start failed): nothing to stop, the directory still goes.
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const extra = Object.entries(settings).map(([name, value]) => ` -c ${name}=${value}`).join('');
  const startCommand = `${pgBin}/pg_ctl -D ${dir}/data -w -o '-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${extra}' -l ${dir}/log start`;
  try {
    asPostgres(`${pgBin}/initdb -D ${dir}/data -A trust -U postgres`);
    asPostgres(startCommand);
  } catch (error) {
    stop();
    throw error;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop,
    crash: () => asPostgresAsync(`${pgBin}/pg_ctl -D ${dir}/data -m immediate -w stop`),
    restart: () => asPostgresAsync(startCommand),
  };
}

export interface BenchPostgres {
  url: string;
  /** Given by BENCH_DATABASE_URL rather than started here. */
  given: boolean;
  /** Removes the throwaway cluster (nothing for a given server). */
  stop(): void;
}

/**
 * The PostgreSQL server a benchmark runs on: BENCH_DATABASE_URL when set, else a throwaway cluster started
 * with `settings`, which `stop` removes, and so does Ctrl-C, so that no cluster is left running in /tmp.
 */
export async function benchPostgres(settings: Record<string, string> = {}, note = ''): Promise<BenchPostgres> {
  const given = process.env.BENCH_DATABASE_URL;
  if (given !== undefined) {
    if (!/^postgres(ql)?:\/\//.test(given)) throw new Error('BENCH_DATABASE_URL must be a postgres:// URL');
    return { url: given, given: true, stop: () => {} };
  }
  let cluster: Cluster | undefined;
  const interrupt = () => {
    cluster?.stop();
    process.exit(130);
  };
  process.once('SIGINT', interrupt);
  try {
    cluster = await startThrowawayCluster(settings);
  } catch (error) {
    process.off('SIGINT', interrupt);
    throw error;
  }
  console.error(`started a throwaway PostgreSQL 15 cluster at ${cluster.url}${note}`);
  const started = cluster;
  return {
    url: started.url,
    given: false,
    stop() {
      started.stop();
      process.off('SIGINT', interrupt);
    },
  };
}

import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Cluster {
  url: string;
  stop(): void;
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

/** Runs a shell command as the postgres user when we are root: initdb refuses to run as root. */
function asPostgres(command: string): void {
  const argv = process.getuid?.() === 0 ? ['su', 'postgres', '-s', '/bin/bash', '-c', command] : ['bash', '-c', command];
  execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Starts a PostgreSQL 15 cluster in a temporary directory, trusting local connections; `stop` deletes it.
 * `settings` are extra server settings (`-c name=value`), e.g. bulk-load tuning; none by default.
 */
export async function startThrowawayCluster(settings: Record<string, string> = {}): Promise<Cluster> {
  if (!existsSync(`${PG_BIN}/initdb`)) throw new Error(`PostgreSQL 15 not found in ${PG_BIN}; set BENCH_DATABASE_URL instead`);
  const dir = mkdtempSync(join(tmpdir(), 'dossier-bench-pg-'));
  if (process.getuid?.() === 0) {
    const postgresUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, postgresUid, -1);
  }
  const port = await freePort();
  const stop = () => {
    try {
      asPostgres(`${PG_BIN}/pg_ctl -D ${dir}/data -m fast -w stop`);
    } catch {
      // Not running (start failed): nothing to stop, the directory still goes.
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    asPostgres(`${PG_BIN}/initdb -D ${dir}/data -A trust -U postgres`);
    const extra = Object.entries(settings).map(([name, value]) => ` -c ${name}=${value}`).join('');
    asPostgres(`${PG_BIN}/pg_ctl -D ${dir}/data -w -o '-p ${port} -k ${dir} -c listen_addresses=127.0.0.1${extra}' -l ${dir}/log start`);
  } catch (error) {
    stop();
    throw error;
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, stop };
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

import cluster from 'node:cluster';
import { pino } from 'pino';
import { buildApp } from './app.ts';
import { configFromEnv, type ServerConfig } from './config.ts';
import { openDatabase } from './store/database.ts';
import { migrate } from './store/migrate.ts';

const config = configFromEnv();
if (config.workers > 1 && cluster.isPrimary) await runPrimary(config);
else await runServer(config);

/** One server process: the app on its own connection pool, stopped cleanly by SIGTERM or SIGINT. */
async function runServer(config: ServerConfig): Promise<void> {
  const db = await openDatabase(config.databaseUrl);
  const app = await buildApp({ config, db });

  let stopping = false;
  async function shutdown(signal: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'shutting down: finishing in-flight requests');
    try {
      // Stops accepting connections and waits for in-flight requests; then the store closes cleanly,
      // which for PGlite checkpoints its data directory.
      await app.close();
      await db.close();
      app.log.info('stopped');
      process.exit(0);
    } catch (error) {
      app.log.error({ err: error }, 'unclean shutdown');
      process.exit(1);
    }
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await app.listen({ port: config.port, host: config.host });
}

/**
 * WORKERS > 1: this process migrates the database once, then runs that many server processes sharing the
 * port (node:cluster deals connections round robin). The servers hold no state of their own, so any of
 * them can answer any request; a server that dies is replaced, and SIGTERM stops them all gracefully.
 */
async function runPrimary(config: ServerConfig): Promise<void> {
  const log = pino({ level: config.logLevel });
  if (!/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    log.fatal('WORKERS > 1 needs DATABASE_URL=postgres://…: the embedded PGlite store belongs to one process');
    process.exit(1);
  }
  const db = await openDatabase(config.databaseUrl);
  await migrate(db);
  await db.close();

  let stopping = false;
  let failed = false;
  // A server dying within seconds of its start would die again: after a few such deaths, give up.
  const QUICK_DEATH_MS = 10_000;
  let quickDeaths = 0;
  const startedAt = new Map<number, number>();
  const fork = () => {
    const worker = cluster.fork();
    startedAt.set(worker.id, Date.now());
  };

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      // A server still starting has no handler yet and ends by the signal itself: that is no failure.
      if (code !== 0 && signal !== 'SIGTERM') failed = true;
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        log.info('stopped');
        process.exit(failed ? 1 : 0);
      }
      return;
    }
    const lived = Date.now() - (startedAt.get(worker.id) ?? 0);
    log.error({ pid: worker.process.pid, code, signal, livedMs: lived }, 'a server process died; starting another');
    if (lived < QUICK_DEATH_MS && ++quickDeaths >= config.workers * 2) {
      log.fatal('server processes keep dying right after they start; stopping');
      stopping = true;
      failed = true;
      for (const other of Object.values(cluster.workers ?? {})) other?.process.kill('SIGTERM');
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(1);
      return;
    }
    fork();
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down the server processes');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  log.info({ workers: config.workers }, 'starting server processes');
  for (let i = 0; i < config.workers; i++) fork();
}

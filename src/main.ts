import cluster from 'node:cluster';
import { pino } from 'pino';
import { configFromEnv, type ServerConfig } from './config.ts';
import { assertCanListen, backoffMs, listenRefusal, StartupRefused, startupStep } from './startup.ts';
import { openStorage } from './store/storage.ts';

const config = configFromEnv();
const log = pino({ level: config.logLevel });
try {
  if (config.workers > 1 && cluster.isPrimary) await runPrimary(config);
  else await runServer(config);
} catch (error) {
  if (!(error instanceof StartupRefused)) throw error;
  log.fatal(error.message);
  process.exit(1);
}

/** One server process: the app on its own connection pool, stopped cleanly by SIGTERM or SIGINT. */
async function runServer(config: ServerConfig): Promise<void> {
  // A server of a WORKERS primary listens through the primary, which has checked the port.
  if (cluster.isPrimary) {
    log.info({ node: process.version }, 'starting');
    await startupStep(log, 'check port', () => assertCanListen(config.host, config.port));
  }
  const dataKeys = await startupStep(log, 'master key', async () => {
    const { dataKeysFor } = await import('./store/master-key.ts');
    try {
      return dataKeysFor(config.encryption, config.databaseUrl, (message) => log.warn(message));
    } catch (error) {
      throw new StartupRefused((error as Error).message);
    }
  });
  const storage = await startupStep(log, 'open store', () => openStorage(config.databaseUrl, {}, dataKeys));
  // Loaded here rather than imported at the top: compiling the server's modules is a step of its own.
  const { buildApp } = await startupStep(log, 'load modules', () => import('./app.ts'));
  const app = await buildApp({ config, storage, waitForStorage: true, startupLog: log });

  let stopping = false;
  async function shutdown(signal: string): Promise<void> {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'shutting down: finishing in-flight requests');
    try {
      // Stops accepting connections and waits for in-flight requests; then the store closes cleanly,
      // which for PGlite checkpoints its data directory.
      await app.close();
      await storage.close();
      app.log.info('stopped');
      process.exit(0);
    } catch (error) {
      app.log.error({ err: error }, 'unclean shutdown');
      process.exit(1);
    }
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  await startupStep(log, 'listen', () =>
    app.listen({ port: config.port, host: config.host }).catch(async (error: unknown) => {
      const refusal = listenRefusal(error, config.host, config.port);
      if (!refusal) throw error;
      await storage.close();
      throw refusal;
    }),
  );
}

/** A server dying sooner than this after its start counts as a quick death: the next one waits longer. */
const QUICK_DEATH_MS = 10_000;
const RESTART_BACKOFF_INITIAL_MS = 1_000;
const RESTART_BACKOFF_MAX_MS = 30_000;

/**
 * WORKERS > 1: this process runs that many server processes sharing the port (node:cluster deals
 * connections round robin). Each migrates the database at its start, in turns under the migration lock,
 * and waits for the database if it is down, so that they build their validators meanwhile. The servers hold no state of their own, so any of
 * them can answer any request; a server that dies is replaced (after a capped backoff when servers keep
 * dying right after their start), never given up on, and SIGTERM stops them all gracefully.
 */
async function runPrimary(config: ServerConfig): Promise<void> {
  if (!/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
    throw new StartupRefused('WORKERS > 1 needs DATABASE_URL=postgres://…: the embedded PGlite store belongs to one process');
  }
  log.info({ node: process.version, workers: config.workers }, 'starting');
  await startupStep(log, 'check port', () => assertCanListen(config.host, config.port));

  let stopping = false;
  let failed = false;
  let quickDeaths = 0;
  const startedAt = new Map<number, number>();
  const pendingRestarts = new Set<NodeJS.Timeout>();
  const fork = () => {
    const worker = cluster.fork();
    startedAt.set(worker.id, Date.now());
  };
  const exitWhenAllStopped = () => {
    if (Object.keys(cluster.workers ?? {}).length > 0) return;
    log.info('stopped');
    process.exit(failed ? 1 : 0);
  };

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      // A server still starting has no handler yet and ends by the signal itself: that is no failure.
      if (code !== 0 && signal !== 'SIGTERM') failed = true;
      exitWhenAllStopped();
      return;
    }
    const livedMs = Date.now() - (startedAt.get(worker.id) ?? 0);
    startedAt.delete(worker.id);
    quickDeaths = livedMs < QUICK_DEATH_MS ? quickDeaths + 1 : 0;
    const restartInMs = quickDeaths === 0 ? 0 : backoffMs(quickDeaths, RESTART_BACKOFF_INITIAL_MS, RESTART_BACKOFF_MAX_MS);
    log.error({ pid: worker.process.pid, code, signal, livedMs, restartInMs }, 'a server process died; starting another');
    const restart = setTimeout(() => {
      pendingRestarts.delete(restart);
      fork();
    }, restartInMs);
    pendingRestarts.add(restart);
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down the server processes');
    for (const restart of pendingRestarts) clearTimeout(restart);
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    exitWhenAllStopped();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  log.info({ workers: config.workers }, 'starting server processes');
  for (let i = 0; i < config.workers; i++) fork();
}

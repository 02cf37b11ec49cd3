import { buildApp } from './app.ts';
import { configFromEnv } from './config.ts';
import { openDatabase } from './store/database.ts';

const config = configFromEnv();
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

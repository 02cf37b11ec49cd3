import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BaseLogger } from 'pino';

/** What the start-up logs through: the server's pino logger, or Fastify's (which wraps one). */
export type StartupLog = Pick<BaseLogger, 'info' | 'warn'>;
import { isStorageUnavailable } from './store/unavailable.ts';

/**
 * A condition the operator must fix before the server can start (a port in use, a data directory another
 * server holds): logged as one fatal line saying so, without a stack trace, and the process exits 1.
 */
export class StartupRefused extends Error {
  override name = 'StartupRefused';
}

/** Capped exponential backoff: `initialMs` for the first retry, doubling, never above `maxMs`. */
export function backoffMs(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
}

const STORAGE_RETRY_INITIAL_MS = 500;
/** Short enough that a server waiting at start comes up within seconds of the database. */
const STORAGE_RETRY_MAX_MS = 5_000;

/**
 * Runs one start-up step and logs how long it took. With `waitForStorage`, a step failing because the
 * database is unreachable is retried with capped backoff, each retry logged, instead of ending the
 * process: a server started (or restarted) during an outage comes up when the database does.
 */
export async function startupStep<T>(log: StartupLog, step: string, work: () => T | Promise<T>, options: { waitForStorage?: boolean } = {}): Promise<T> {
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const value = await work();
      log.info({ step, ms: Math.round(performance.now() - started) }, `start-up: ${step}`);
      return value;
    } catch (error) {
      if (!options.waitForStorage || !isStorageUnavailable(error)) throw error;
      const retryInMs = backoffMs(attempt, STORAGE_RETRY_INITIAL_MS, STORAGE_RETRY_MAX_MS);
      log.warn({ step, attempt, retryInMs, reason: (error as Error).message }, `start-up: ${step}: the database is unreachable; retrying`);
      await sleep(retryInMs);
    }
  }
}

/** The operator's explanation of a failure to listen, or undefined for a failure that is not about the port. */
export function listenRefusal(error: unknown, host: string, port: number): StartupRefused | undefined {
  switch ((error as { code?: string }).code) {
    case 'EADDRINUSE':
      return new StartupRefused(`port ${port} on ${host} is already in use: stop what listens there or set PORT to another port`);
    case 'EACCES':
      return new StartupRefused(`not allowed to listen on port ${port} on ${host}: use a port above 1023 or give the process the right`);
    case 'EADDRNOTAVAIL':
      return new StartupRefused(`cannot listen on ${host}: no such address on this machine (set HOST)`);
    default:
      return undefined;
  }
}

/**
 * Fails fast when the server could not listen: before the seconds of opening the store and building the
 * validator, rather than after them. Listening again at the end can still fail (something took the port
 * meanwhile); that is reported the same way.
 */
export async function assertCanListen(host: string, port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ port, host, exclusive: true }, resolve);
  }).catch((error: unknown) => {
    throw listenRefusal(error, host, port) ?? error;
  });
  await new Promise((resolve) => probe.close(resolve));
}

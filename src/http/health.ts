import type { FastifyInstance } from 'fastify';
import type { ResourceStore } from '../store/resource-store.ts';
import { STORAGE_RETRY_AFTER_SECONDS } from '../store/unavailable.ts';

/** GET /health: the process answers (liveness) and its storage answers a query (readiness). */
export async function healthRoutes(app: FastifyInstance, options: { store: Pick<ResourceStore, 'ping'> }): Promise<void> {
  app.get('/health', async (request, reply) => {
    try {
      await options.store.ping();
      return { status: 'pass' };
    } catch (error) {
      request.log.warn({ err: error }, 'storage unreachable');
      return reply.status(503).header('retry-after', String(STORAGE_RETRY_AFTER_SECONDS)).send({ status: 'fail', output: 'storage unreachable' });
    }
  });
}

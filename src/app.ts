import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ServerConfig } from './config.ts';
import { loadCapabilityStatement } from './fhir/capability.ts';
import { SERVED_RESOURCE_TYPES } from './fhir/resource-types.ts';
import { baseValidator, type ResourceValidator } from './fhir/validation/validator.ts';
import { registerErrorHandlers } from './http/errors.ts';
import { fhirRoutes } from './http/fhir-routes.ts';
import { healthRoutes } from './http/health.ts';
import { FhirRouter } from './router/router.ts';
import type { Database } from './store/database.ts';
import { migrate } from './store/migrate.ts';
import { Repository } from './store/repository.ts';

export interface AppOptions {
  config: Pick<ServerConfig, 'logLevel' | 'bodyLimit' | 'publicBaseUrl'>;
  db: Database;
  /** Shared between app instances (tests) because compiling the R4 schema takes seconds. */
  validator?: ResourceValidator;
}

let defaultValidator: ResourceValidator | undefined;

/** Builds the server on an open database: migrations applied, routes registered, not yet listening. */
export async function buildApp({ config, db, validator }: AppOptions): Promise<FastifyInstance> {
  await migrate(db);
  const repo = new Repository(db);
  validator ??= defaultValidator ??= baseValidator(SERVED_RESOURCE_TYPES);
  const router = new FhirRouter({ repo, validator, capabilityStatement: loadCapabilityStatement() });

  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  registerErrorHandlers(app);
  await app.register(healthRoutes, { repo });
  await app.register(fhirRoutes, { router, publicBaseUrl: config.publicBaseUrl });
  return app;
}

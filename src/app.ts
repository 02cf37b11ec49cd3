import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ServerConfig } from './config.ts';
import { loadCapabilityStatement } from './fhir/capability.ts';
import { DEFAULT_INPUT_LIMITS } from './fhir/input-limits.ts';
import { SERVED_RESOURCE_TYPES } from './fhir/resource-types.ts';
import { createProfileValidator } from './fhir/validation/profile-validator.ts';
import type { ResourceValidator } from './fhir/validation/validator.ts';
import { clientErrorHandler, frameworkErrors, registerErrorHandlers } from './http/errors.ts';
import { fhirRoutes } from './http/fhir-routes.ts';
import { healthRoutes } from './http/health.ts';
import { defaultOperations } from './operations/index.ts';
import type { StoreContext } from './router/context.ts';
import { FhirRouter } from './router/router.ts';
import { loadPatientCompartment } from './search/compartment.ts';
import { SearchEngine } from './search/execute.ts';
import { DEFAULT_MAX_INDEX_ROWS, SearchIndexWriter } from './search/index-writer.ts';
import { sweepStaleUploads } from './store/binary-store.ts';
import { CreateCoalescer } from './store/create-coalescer.ts';
import { loadSearchParameters, SearchParameterRegistry } from './search/registry.ts';
import type { Database } from './store/database.ts';
import { migrate } from './store/migrate.ts';
import { Repository } from './store/repository.ts';

export interface AppOptions {
  config: Pick<ServerConfig, 'logLevel' | 'bodyLimit' | 'publicBaseUrl'> &
    Partial<Pick<ServerConfig, 'bundleMaxEntries' | 'bundleBodyLimit' | 'unknownProfiles' | 'resourceMaxDepth' | 'resourceMaxArrayLength' | 'resourceMaxIndexRows'>>;
  db: Database;
  /** Defaults to the profile validator; shared between app instances because building it takes seconds. */
  validator?: ResourceValidator;
}

/** Staged Binary bytes no version claimed within a day were left by a server stopped mid-upload. */
const STALE_UPLOAD_SECONDS = 24 * 3600;

let defaultValidator: ResourceValidator | undefined;
let defaultRegistry: SearchParameterRegistry | undefined;

/** Builds the server on an open database: migrations applied, routes registered, not yet listening. */
export async function buildApp({ config, db, validator }: AppOptions): Promise<FastifyInstance> {
  await migrate(db);
  await sweepStaleUploads(db, STALE_UPLOAD_SECONDS);
  const registry = (defaultRegistry ??= new SearchParameterRegistry(loadSearchParameters()));
  const indexWriter = new SearchIndexWriter(registry, config.resourceMaxIndexRows ?? DEFAULT_MAX_INDEX_ROWS);
  // Creates outside transactions share statements under load; a transaction's creates are its own.
  const coalescer = new CreateCoalescer(db);
  const storeFor = (database: Database): StoreContext => ({
    db: database,
    repo: new Repository(database, indexWriter, database === db ? coalescer : undefined),
    search: new SearchEngine(database, registry),
  });
  const store = storeFor(db);
  // The French profiles by default (FHIR_DEFAULT_PROFILES=none leaves only the base R4 checks).
  validator ??= defaultValidator ??= createProfileValidator({ resourceTypes: SERVED_RESOURCE_TYPES, unknownProfiles: config.unknownProfiles });
  const inputLimits = {
    maxDepth: config.resourceMaxDepth ?? DEFAULT_INPUT_LIMITS.maxDepth,
    maxArrayLength: config.resourceMaxArrayLength ?? DEFAULT_INPUT_LIMITS.maxArrayLength,
  };
  const router = new FhirRouter({
    store,
    storeFor,
    validator,
    capabilityStatement: loadCapabilityStatement(),
    registry,
    patientCompartment: loadPatientCompartment(),
    limits: { maxEntries: config.bundleMaxEntries ?? 10_000 },
    inputLimits,
    operations: defaultOperations(),
  });

  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    frameworkErrors,
    clientErrorHandler,
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  registerErrorHandlers(app);
  await app.register(healthRoutes, { repo: store.repo });
  await app.register(fhirRoutes, { router, publicBaseUrl: config.publicBaseUrl, bundleBodyLimit: config.bundleBodyLimit, inputLimits });
  return app;
}

import t, { type Test } from 'tap';
import { startTestServer, type TestServer } from './helpers/app.ts';
import { describe, FuzzGenerator, judge, type FuzzRequest } from './helpers/fuzz.ts';

/**
 * Seeded fuzzing over the whole REST surface: creates, updates, transaction and batch entries, searches,
 * reads, patches, conditional creates, history and undecodable bodies, each mutated from something valid.
 * No answer may be a 5xx, and every error must be an OperationOutcome. The seed is fixed so that the suite
 * is repeatable (FUZZ_SEED picks another; `npm run fuzz` runs long random-seeded campaigns).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261203);
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 2000);

async function campaign(t: Test, server: TestServer, generator: FuzzGenerator, count: number) {
  const failures: string[] = [];
  const byStatus = new Map<number, number>();
  for (let n = 0; n < count; n++) {
    const request: FuzzRequest = generator.next();
    const response = await server.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.payload });
    byStatus.set(response.statusCode, (byStatus.get(response.statusCode) ?? 0) + 1);
    const problem = judge({ status: response.statusCode, contentType: String(response.headers['content-type'] ?? ''), body: response.body });
    if (problem) failures.push(describe(request, problem));
    if (response.statusCode === 201 && request.method === 'POST' && request.url.startsWith('/fhir/') && !request.url.includes('_search')) {
      const created = JSON.parse(response.body) as { resourceType?: string; id?: string };
      if (created.resourceType && created.id) generator.remember(created.resourceType, created.id);
    }
  }
  t.comment(`seed ${generator.seed}: ${count} requests, answers ${[...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ')}`);
  t.same(failures.slice(0, 20), [], `no 5xx and every error an OperationOutcome (${failures.length} failures, seed ${generator.seed})`);
  const health = await server.inject({ method: 'GET', url: '/health' });
  t.equal(health.statusCode, 200, 'the server still answers afterwards');
  for (const [resourceType, ids] of generator.known) {
    for (const id of ids.slice(0, 5)) {
      const read = await server.inject({ method: 'GET', url: `/fhir/${resourceType}/${id}` });
      t.ok([200, 410].includes(read.statusCode), `${resourceType}/${id} created during the run reads back (or was deleted): ${read.statusCode} ${read.body.slice(0, 200)}`);
    }
  }
}

t.test(`fuzzed requests on base R4 validation never answer 5xx (seed ${SEED})`, async (t) => {
  console.log(`# fuzz seed ${SEED}`);
  const server = await startTestServer(t);
  await campaign(t, server, new FuzzGenerator(SEED), Math.ceil(REQUESTS * 0.75));
});

t.test(`fuzzed requests on the French profiles never answer 5xx (seed ${SEED + 1})`, async (t) => {
  const server = await startTestServer(t, { frenchProfiles: true });
  await campaign(t, server, new FuzzGenerator(SEED + 1), Math.floor(REQUESTS * 0.25));
});

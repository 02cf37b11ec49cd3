/**
 * `npm run fuzz`: a long fuzzing campaign against a real server process, over HTTP.
 *
 *   FUZZ_REQUESTS  how many requests (default 20000)
 *   FUZZ_SEED      the seed (default: a random one, printed, so that a failing run can be replayed)
 *   FUZZ_FRENCH    1: validate with the French default profiles, as `npm start` does (default: base R4
 *                  only, which accepts more of the mutated resources and so reaches the store more often)
 *   DATABASE_URL   the store of the server started for the run (default: a PGlite in memory)
 *   FUZZ_URL       fuzz an already running server at this origin instead (e.g. http://127.0.0.1:8080)
 *
 * Prints the answers by kind and status, and each failure (a 5xx, or an error that is not an
 * OperationOutcome) with its request id, which the server's log (written beside the failures file) holds
 * the stack of. Exits 1 when anything failed.
 */
import { request as httpRequest, Agent } from 'node:http';
import { randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, FuzzGenerator, judge, type FuzzRequest } from '../test/helpers/fuzz.ts';
import { startServerProcess, type ServerProcess } from '../test/helpers/server-process.ts';

const total = Number(process.env.FUZZ_REQUESTS ?? 20_000);
const seed = Number(process.env.FUZZ_SEED ?? randomInt(2 ** 31));
const CONCURRENCY = 4;

let server: ServerProcess | undefined;
let origin = process.env.FUZZ_URL?.replace(/\/+$/, '');
if (!origin) {
  server = await startServerProcess(process.env.DATABASE_URL || 'memory://', {
    env: { LOG_LEVEL: 'error', ...(process.env.FUZZ_FRENCH === '1' ? {} : { FHIR_DEFAULT_PROFILES: 'none' }) },
  });
  origin = server.base;
}
console.log(`fuzzing ${origin} with seed ${seed}: ${total} requests`);

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
interface Answer {
  status: number;
  contentType: string;
  body: string;
  requestId: string;
}

/** node:http, not fetch: it sends what the generator wrote (odd headers, undecodable bytes) as written. */
function send(request: FuzzRequest, fresh = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(`${origin}${request.url}`, { method: request.method, headers: request.headers, agent: fresh ? false : agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          contentType: String(response.headers['content-type'] ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
          requestId: String(response.headers['x-request-id'] ?? ''),
        }),
      );
      response.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end(request.payload);
  });
}

const generator = new FuzzGenerator(seed);
const counts = new Map<string, number>();
const failures: string[] = [];
let refusedByClient = 0;
let sent = 0;
const startedAt = Date.now();

async function worker(): Promise<void> {
  while (sent < total) {
    sent++;
    const request = generator.next();
    let answer: Answer;
    try {
      // A kept-alive socket the server has just closed (after a 413 or 431, say) resets the next request
      // on it: that one is sent again, once, on a connection of its own.
      answer = await send(request).catch((error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' || error.code === 'EPIPE' ? send(request, true) : Promise.reject(error)));
    } catch (error) {
      // node:http refuses to send some headers (control characters): nothing reached the server.
      if ((error as NodeJS.ErrnoException).code === 'ERR_INVALID_CHAR' || (error as NodeJS.ErrnoException).code === 'ERR_INVALID_HTTP_TOKEN') {
        refusedByClient++;
        continue;
      }
      failures.push(describe(request, `connection failed: ${(error as Error).message}`));
      continue;
    }
    const key = `${request.kind} ${answer.status}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const problem = judge(answer);
    if (problem) failures.push(`${describe(request, problem)} [request ${answer.requestId}]`);
    if (answer.status === 201 && request.method === 'POST' && !request.url.includes('_search') && request.url !== '/fhir') {
      try {
        const created = JSON.parse(answer.body) as { resourceType?: string; id?: string };
        if (created.resourceType && created.id) generator.remember(created.resourceType, created.id);
      } catch {
        // A created Binary answered as itself has no JSON to read an id from.
      }
    }
  }
}

await Promise.all(Array.from({ length: CONCURRENCY }, worker));
const seconds = (Date.now() - startedAt) / 1000;

const kinds = [...new Set([...counts.keys()].map((key) => key.split(' ')[0]!))].sort();
const statuses = [...new Set([...counts.keys()].map((key) => Number(key.split(' ')[1])))].sort((a, b) => a - b);
console.log(`\n| kind | ${statuses.join(' | ')} |\n|---|${statuses.map(() => '---:').join('|')}|`);
for (const kind of kinds) console.log(`| ${kind} | ${statuses.map((status) => counts.get(`${kind} ${status}`) ?? 0).join(' | ')} |`);
console.log(`\n${total - refusedByClient} requests sent in ${seconds.toFixed(0)} s (${refusedByClient} not sendable by node:http), seed ${seed}`);

const failuresFile = join(tmpdir(), `dossier-fuzz-${seed}.txt`);
if (server) {
  writeFileSync(`${failuresFile.replace(/\.txt$/, '')}-server.log`, server.logs.join('\n'));
  await server.stop();
}
if (failures.length) {
  writeFileSync(failuresFile, failures.join('\n'));
  console.log(`${failures.length} failures (all in ${failuresFile}${server ? ', server log beside it' : ''}); the first ones:`);
  for (const failure of failures.slice(0, 20)) console.log(`- ${failure.slice(0, 500)}`);
  process.exit(1);
}
console.log('0 failures: no 5xx, every error an OperationOutcome');
process.exit(0);

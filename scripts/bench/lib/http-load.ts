/**
 * The HTTP load generator, run as a child process of the benchmark (see load-client.ts). It lives in its own
 * process so that building requests and parsing responses does not steal event-loop time, or memory, from the
 * server being measured.
 */
import http from 'node:http';
import { closedLoop } from './closed-loop.ts';
import type { HttpJob, HttpJobResult } from './load-client.ts';

interface Answer {
  status: number;
  location?: string;
}

/** One request on a kept-alive connection; resolves once the whole response body has arrived. */
function send(agent: http.Agent, origin: URL, method: string, path: string, body?: string, authorization?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { accept: 'application/fhir+json', ...(authorization ? { authorization } : {}) };
    if (body !== undefined) {
      headers['content-type'] = 'application/fhir+json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const request = http.request({ agent, host: origin.hostname, port: origin.port, method, path, headers }, (response) => {
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, location: response.headers.location }));
      response.resume();
    });
    request.on('error', reject);
    request.end(body);
  });
}

async function run(job: HttpJob): Promise<HttpJobResult> {
  const origin = new URL(job.origin);
  // One socket per lane, kept open between requests, as a connection-pooling client would.
  const agent = new http.Agent({ keepAlive: true, maxSockets: job.concurrency });
  const statuses: Record<number, number> = {};
  const locations = new Array<string>(job.paths.length).fill('');
  const cpuBefore = process.cpuUsage();
  try {
    const { latencies, elapsedMs } = await closedLoop(job.paths.length, job.concurrency, async (index) => {
      const answer = await send(agent, origin, job.method, job.paths[index]!, job.bodies?.[index], job.authorization);
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      locations[index] = answer.location ?? '';
    });
    const cpu = process.cpuUsage(cpuBefore);
    return { latencies, elapsedMs, statuses, locations, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    agent.destroy();
  }
}

process.on('message', (job: HttpJob) => {
  run(job).then(
    (result) => process.send!(result),
    (error: Error) => process.send!({ error: error.stack ?? String(error) }),
  );
});
// The benchmark closing the channel is the signal to stop.
process.on('disconnect', () => process.exit(0));

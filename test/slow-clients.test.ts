import { connect, type Socket } from 'node:net';
import t from 'tap';
import { startTestServer } from './helpers/app.ts';

// Short timeouts, so that cutting a slow client takes a second or two rather than minutes.
const REQUEST_TIMEOUT = 2000;
const HEADERS_TIMEOUT = 1000;
const server = await startTestServer(t, { requestTimeout: REQUEST_TIMEOUT, headersTimeout: HEADERS_TIMEOUT });
await server.app.listen({ port: 0, host: '127.0.0.1' });
const { port } = server.app.server.address() as { port: number };
const base = `http://127.0.0.1:${port}`;

/** A raw connection that sends `head`, then one byte of body every `everyMs` until it is closed. */
function slowSender(head: string, everyMs: number): { socket: Socket; received: () => string; closed: Promise<void>; isClosed: () => boolean } {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  let isClosed = false;
  socket.on('data', (chunk) => (received += chunk.toString()));
  socket.on('error', () => {});
  const timer = setInterval(() => {
    if (!socket.destroyed && socket.writable && head === '') socket.write('x');
  }, everyMs);
  socket.write(head);
  head = '';
  const closed = new Promise<void>((resolve) =>
    socket.on('close', () => {
      isClosed = true;
      clearInterval(timer);
      resolve();
    }),
  );
  return { socket, received: () => received, closed, isClosed: () => isClosed };
}

/** `promise`, or a failure after `ms`: a generous bound, only so that a broken server fails rather than hangs. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);
}

t.test('a client sending its body too slowly is cut off with 408, while the server answers others', async (t) => {
  const head = `POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${server.authorization}\r\nContent-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n{"resourceType":"Patient","text":"`;
  const slow = slowSender(head, 100);
  // Others are served while the slow body is still arriving.
  let answeredMeanwhile = 0;
  while (!slow.isClosed() && answeredMeanwhile < 3) {
    const response = await fetch(`${base}/fhir/Patient?_count=1`, { headers: { authorization: server.authorization } });
    await response.text();
    if (response.status === 200 && !slow.isClosed()) answeredMeanwhile++;
  }
  t.equal(answeredMeanwhile, 3, 'other requests answered while the slow one was open');
  await within(slow.closed, 60_000, 'the slow client was not cut off');
  t.match(slow.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/, '408');
  t.match(slow.received(), /Content-Type: application\/fhir\+json/);
  const outcome = JSON.parse(slow.received().split('\r\n\r\n')[1]!);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.equal(outcome.issue[0].code, 'timeout');
  const after = await fetch(`${base}/fhir/Patient?_count=1`, { headers: { authorization: server.authorization } });
  t.equal(after.status, 200, 'the server still answers afterwards');
});

t.test('a client sending its headers too slowly is cut off', async (t) => {
  const slow = slowSender('GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nX-Slow: ', 100);
  await within(slow.closed, 60_000, 'the slow client was not cut off');
  t.match(slow.received(), /^HTTP\/1\.1 408 /);
});

t.test('a body that arrives steadily within the timeout is stored', async (t) => {
  const body = JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Lent' }] });
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString()));
  socket.write(`POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${server.authorization}\r\nContent-Type: application/fhir+json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
  // Half the body now, half a little later: slow, but within the timeout.
  socket.write(body.slice(0, 20));
  await new Promise((resolve) => setTimeout(resolve, REQUEST_TIMEOUT / 4));
  socket.write(body.slice(20));
  await within(new Promise((resolve) => socket.on('close', resolve)), 60_000, 'no answer');
  t.match(received, /^HTTP\/1\.1 201 /);
});

import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Binary } from 'fhir/r4';
import { checkInput, type InputLimits } from '../fhir/input-limits.ts';
import { FhirError } from '../fhir/outcome.ts';
import { jsonPieces, jsonText, ResourceText, type ResponseResource } from '../fhir/resource-text.ts';
import { FormParameters, JsonPatchBody, RawBody, UnsupportedBody } from '../router/request.ts';
import type { StoredBinary } from '../store/repository.ts';
import { setRawContentHeaders } from './security-headers.ts';

export const FHIR_JSON = 'application/fhir+json';
const BINARY_PATH = /^\/fhir\/Binary(?:\/[A-Za-z0-9\-.]{1,64})?(?:\?|$)/;
const JSON_TYPES = new Set([FHIR_JSON, 'application/json']);
const FORMAT_ALIASES: Record<string, string> = { json: FHIR_JSON, 'application/fhir+json': FHIR_JSON, 'application/json': 'application/json' };

/**
 * Request bodies: FHIR JSON under either media type (R4 http.html#mime-type). A body of any other type
 * is not refused here but handed on as an UnsupportedBody, so the router first answers 404 or 405 for a
 * path or method it does not serve, and 415 only for a write it would otherwise perform.
 * `__proto__` keys are refused rather than silently dropped. A JSON body must be UTF-8 (RFC 8259): bytes that
 * are not are refused, not stored replaced by U+FFFD. A parsed body is held to `limits` before anything walks it.
 */
export function registerBodyParsers(app: FastifyInstance, limits: InputLimits): void {
  app.removeContentTypeParser(['application/json', 'text/plain']);
  const fastifyJson = app.getDefaultJsonParser('error', 'error');
  const parseJson = (request: FastifyRequest, bytes: Buffer, done: (error: Error | null, value?: unknown) => void) => {
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      return done(FhirError.badRequest('The request body is not valid UTF-8: FHIR JSON must be sent in UTF-8', undefined, 'structure'));
    }
    void fastifyJson(request, text, (error, value) => {
      if (error) return done(explained(error, text));
      try {
        checkInput(value, limits);
      } catch (refusal) {
        return done(refusal as Error);
      }
      done(null, value);
    });
  };
  app.addContentTypeParser([...JSON_TYPES], { parseAs: 'buffer' }, (request, body, done) => {
    // Clients often send Content-Type on a GET or DELETE without a body: that is no body, not bad JSON.
    // A write without a body is refused later, by the router, for every transport alike.
    if ((body as Buffer).length === 0) return done(null, undefined);
    return parseJson(request, body as Buffer, done);
  });
  app.addContentTypeParser('application/json-patch+json', { parseAs: 'buffer' }, (request, body, done) => {
    parseJson(request, body as Buffer, (error, value) => done(error ?? null, error ? undefined : new JsonPatchBody(value)));
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (request, body, done) => {
    done(null, new FormParameters([...new URLSearchParams(body as string)]));
  });
  // Not buffered: a Binary sent in its own media type (R4 binary.html) is handed on as the stream it is,
  // for the write to store as it arrives; anything else is not read at all.
  app.addContentTypeParser('*', (request, payload, done) => {
    const mediaType = request.headers['content-type'] ?? 'application/octet-stream';
    if (!BINARY_PATH.test(request.url)) return done(null, new UnsupportedBody(mediaType));
    const limit = request.routeOptions.bodyLimit;
    if (Number(request.headers['content-length']) > limit) return done(bodyTooLarge(limit));
    return done(null, new RawBody(mediaType, limited(payload, limit)));
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Fastify says only that the body is not valid JSON, naming `application/json` whatever the request's
 * type was; the client is told what JSON.parse found, and where.
 */
function explained(error: Error, body: string): Error {
  if ((error as { code?: string }).code !== 'FST_ERR_CTP_INVALID_JSON_BODY') return error;
  try {
    JSON.parse(body);
  } catch (syntax) {
    return FhirError.badRequest(`Malformed JSON body: ${(syntax as Error).message}`, undefined, 'structure');
  }
  return error;
}

/**
 * The body as it arrives, failing with 413 once past `limit` bytes (Fastify enforces its body limit only
 * on the bodies it buffers). Nothing is read until the body is iterated: a request answered without
 * reading it (404, 412…) leaves it to Node, which discards it.
 */
async function* limited(payload: Readable, limit: number): AsyncGenerator<Buffer> {
  const counter = new BodyLimit(limit);
  // pipe() would leave the counter waiting forever on a client that went away.
  payload.on('error', (error) => counter.destroy(error));
  yield* payload.pipe(counter);
}

class BodyLimit extends Transform {
  private received = 0;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.received += chunk.length;
    if (this.received > this.limit) return callback(bodyTooLarge(this.limit));
    callback(null, chunk);
  }
}

/**
 * 413 for a body over the limit. The rest of the body is left unread, still on its way: the connection
 * closes after the answer, as Fastify does for the bodies it buffers.
 */
function bodyTooLarge(limit: number): FhirError {
  return new FhirError(413, [{ code: 'too-long', diagnostics: `Request body is larger than the ${limit} bytes this server accepts` }], { connection: 'close' });
}

/**
 * Whether a read of a Binary should answer its raw content (R4 binary.html): unless the client asks for
 * FHIR JSON by `_format` or `Accept`, a Binary is served as itself, in its own media type.
 */
export function wantsRawBinary(request: FastifyRequest, path: string): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  if (!/^Binary\/[^/]+(\/_history\/[^/]+)?$/.test(path)) return false;
  if (typeof (request.query as Record<string, unknown>)._format === 'string') return false;
  const accept = (request.headers.accept ?? '').toLowerCase();
  return !/application\/(fhir\+)?json/.test(accept);
}

/**
 * The media type to answer with, from `_format` (which wins) or `Accept` (R4 http.html#mime-type).
 * Only JSON is produced; asking for anything else only (XML, Turtle) is 406.
 */
export function negotiateResponseType(request: FastifyRequest): string {
  const format = (request.query as Record<string, unknown>)._format;
  if (typeof format === 'string') {
    const chosen = FORMAT_ALIASES[format.split(';')[0]!.trim()];
    if (!chosen) throw new FhirError(406, [{ code: 'not-supported', diagnostics: `_format '${format}' is not supported: this server produces JSON only` }]);
    return chosen;
  }
  const accept = request.headers.accept;
  if (!accept) return FHIR_JSON;
  const ranges = accept.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return { type, q: q ? Number(q.slice(2)) : 1 };
  });
  const acceptable = ranges.filter((r) => r.q > 0);
  if (acceptable.some((r) => r.type === FHIR_JSON)) return FHIR_JSON;
  if (acceptable.some((r) => r.type === 'application/json')) return 'application/json';
  if (acceptable.some((r) => r.type === '*/*' || r.type === 'application/*' || r.type === '')) return FHIR_JSON;
  throw new FhirError(406, [{ code: 'not-supported', diagnostics: `Cannot produce '${accept}': this server produces application/fhir+json` }]);
}

/**
 * Sends a Binary's content as itself, in its own media type, streamed from the store chunk by chunk as
 * the client takes it; an active type (HTML, SVG…) as a sandboxed attachment (security-headers.ts). HEAD
 * gets the headers only.
 */
export function sendRawBinary(request: FastifyRequest, reply: FastifyReply, binary: StoredBinary): FastifyReply {
  const contentType = (binary.resource as Binary).contentType ?? 'application/octet-stream';
  setRawContentHeaders(reply, contentType);
  reply.type(contentType).header('content-length', binary.content.size);
  if (request.method === 'HEAD') return reply.send();
  return reply.send(Readable.from(binary.content.chunks(), { objectMode: false }));
}

/**
 * Sends a resource with the negotiated type; a stored resource goes out as stored unless `_pretty` asks
 * otherwise. A Bundle, and a Binary whose bytes are streamed, go out in pieces as the client takes them.
 */
export function sendResource(request: FastifyRequest, reply: FastifyReply, body: ResponseResource, mediaType: string): FastifyReply {
  const indent = (request.query as Record<string, unknown>)._pretty === 'true' ? 2 : undefined;
  reply.type(`${mediaType}; charset=utf-8`);
  const streamed = body.resourceType === 'Bundle' || (body instanceof ResourceText && body.dataBytes() !== undefined);
  if (!streamed) return reply.send(jsonText(body, indent));
  if (request.method === 'HEAD') return reply.send();
  return reply.send(Readable.from(jsonPieces(body, indent), { objectMode: false }));
}

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest, FastifyServerOptions } from 'fastify';
import { pino, type DestinationStream, type LevelWithSilent } from 'pino';
import { cut } from '../fhir/outcome.ts';

/**
 * Longest message or error text a log line carries: 442 refused requests once wrote 521 MB of logs, one
 * line of 53 MB, because an error's message echoed what the client sent.
 */
export const MAX_LOGGED_TEXT = 1000;
const MAX_LOGGED_STACK = 4000;

/** A client's `x-request-id` is kept only when it is a plain token: it goes into every log line. */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Fastify's logger: pino JSON lines that hold no personal data at info level and no line longer than a
 * few kilobytes. A request is logged by method, path and the names of its query parameters, never their
 * values (`Patient?name=Martin` is a search for a person), its body or headers.
 */
export function loggerOptions(level: LevelWithSilent, stream?: DestinationStream): FastifyServerOptions['logger'] {
  return {
    level,
    ...(stream ? { stream } : {}),
    serializers: {
      req: (request: FastifyRequest) => ({ method: request.method, ...requestTarget(request.url) }),
      res: (reply: { statusCode: number }) => ({ statusCode: reply.statusCode }),
      err: (error: Error) => {
        const serialised = pino.stdSerializers.err(error);
        return { type: serialised.type, message: cut(serialised.message, MAX_LOGGED_TEXT), stack: cut(serialised.stack, MAX_LOGGED_STACK), ...codeOf(error) };
      },
    },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((arg) => (typeof arg === 'string' ? cut(arg, MAX_LOGGED_TEXT) : arg)) as Parameters<typeof method>);
      },
    },
  };
}

/** The request's id: the client's `x-request-id` when it is well-formed, a new UUID otherwise. */
export function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** A request URL without its query: its path and the names of its query parameters. */
function requestTarget(url: string): { url: string; parameters?: string[] } {
  const query = url.indexOf('?');
  const path = cut(query < 0 ? url : url.slice(0, query), 200);
  if (query < 0) return { url: path };
  const names = [...new Set([...new URLSearchParams(url.slice(query + 1)).keys()].map((name) => cut(name, 64)))];
  return { url: path, parameters: names.slice(0, 50) };
}

function codeOf(error: Error): { code?: string } {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? { code: cut(code, 64) } : {};
}

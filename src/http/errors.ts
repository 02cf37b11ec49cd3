import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FhirError, operationOutcome, type IssueCode } from '../fhir/outcome.ts';
import { FHIR_JSON } from './content.ts';

const CODE_BY_STATUS: Record<number, IssueCode> = {
  400: 'invalid',
  404: 'not-found',
  405: 'not-supported',
  406: 'not-supported',
  413: 'too-long',
  415: 'not-supported',
};

/**
 * One error handler for the whole server: every failure leaves as an OperationOutcome with its status.
 * Client errors say what was wrong; server errors are logged and say nothing of the internals.
 */
export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | FhirError, request, reply) => {
    if (error instanceof FhirError) {
      return reply.status(error.status).headers(error.headers).type(FHIR_JSON).send(error.outcome);
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) {
      request.log.error({ err: error }, 'request failed');
      return reply
        .status(500)
        .type(FHIR_JSON)
        .send(operationOutcome([{ severity: 'fatal', code: 'exception', diagnostics: `Internal server error (request ${request.id})` }]));
    }
    return reply
      .status(status)
      .type(FHIR_JSON)
      .send(operationOutcome([{ code: CODE_BY_STATUS[status] ?? 'processing', diagnostics: clientMessage(error, request.routeOptions.bodyLimit) }]));
  });

  app.setNotFoundHandler((request, reply) => {
    reply
      .status(404)
      .type(FHIR_JSON)
      .send(operationOutcome([{ code: 'not-found', diagnostics: `No endpoint at ${request.method} ${request.url.split('?')[0]}; the FHIR API is under /fhir` }]));
  });
}

/**
 * Fastify's own refusals before any route (a path whose percent-encoding does not decode, `%FF`), as
 * OperationOutcomes like every other answer. Given to Fastify as its `frameworkErrors` option.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode && error.statusCode < 500 ? error.statusCode : 400;
  const diagnostics = error.code === 'FST_ERR_BAD_URL' ? `The URL is not valid: ${error.message}` : error.message;
  reply.status(status).type(FHIR_JSON).header('x-request-id', request.id).send(operationOutcome([{ code: CODE_BY_STATUS[status] ?? 'invalid', diagnostics }]));
}

/**
 * A request Node's HTTP parser refuses before Fastify sees it (headers too large: 431; malformed: 400;
 * too slow: 408). No reply object exists: the OperationOutcome is written on the socket, which then closes,
 * as Node does for these errors. Given to Fastify as its `clientErrorHandler` option.
 */
export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, diagnostics]: [number, IssueCode, string] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'too-long', 'The request headers are larger than this server accepts']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'timeout', 'The request was not received in time']
        : [400, 'structure', 'The request is not valid HTTP'];
  const body = JSON.stringify(operationOutcome([{ code, diagnostics }]));
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${FHIR_JSON}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

function clientMessage(error: FastifyError, bodyLimit: number | undefined): string {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return `Malformed JSON body: ${error.message}`;
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `Request body is larger than the ${bodyLimit ?? 'configured'} bytes this server accepts`;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return `Unsupported Content-Type: send ${FHIR_JSON} (or application/json)`;
    default:
      return error instanceof SyntaxError ? `Malformed JSON body: ${error.message}` : error.message;
  }
}

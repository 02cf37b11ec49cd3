import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FhirError, operationOutcome, type IssueCode } from '../fhir/outcome.ts';
import { failureAnswer, isStorageUnavailable } from '../store/unavailable.ts';
import { FHIR_JSON } from './content.ts';
import { API_CONTENT_SECURITY_POLICY, SECURITY_HEADERS } from './security-headers.ts';

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
    if (status >= 500 || isStorageUnavailable(error)) {
      const failure = failureAnswer(error, request.id);
      if (failure.status === 503) request.log.warn({ err: error }, 'storage unavailable');
      else if (failure.status === 409) request.log.warn({ err: error }, 'undone for a concurrent request');
      else request.log.error({ err: error }, 'request failed');
      return reply.status(failure.status).headers(failure.headers).type(FHIR_JSON).send(failure.outcome);
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
  // Sent before any route, so without the onSend hooks: their headers are set here.
  reply
    .status(status)
    .type(FHIR_JSON)
    .headers({ ...SECURITY_HEADERS, 'content-security-policy': API_CONTENT_SECURITY_POLICY, 'x-request-id': request.id })
    .send(operationOutcome([{ code: CODE_BY_STATUS[status] ?? 'invalid', diagnostics }]));
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

const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'The request did not arrive in time: it was cut off'],
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'The request headers are larger than this server accepts'],
};

/**
 * A request that broke off before Fastify had it (headers or body too slow, headers too large, not HTTP)
 * is answered on the socket itself, still as an OperationOutcome, and the connection closed.
 */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, diagnostics] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'Bad Request', 'Malformed HTTP request'];
  if (socket.writable) {
    const body = JSON.stringify(operationOutcome([{ code: status === 408 ? 'timeout' : status === 431 ? 'too-long' : 'structure', diagnostics }]));
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${FHIR_JSON}; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

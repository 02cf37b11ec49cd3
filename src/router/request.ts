import type { ResponseResource } from '../fhir/resource-text.ts';
import type { AccessContext } from '../store/access.ts';
import type { LocalReference } from './references.ts';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * One FHIR interaction request, free of any transport: built from an HTTP request, and later from each
 * entry of a transaction or batch Bundle, so both run through the very same code.
 */
export interface FhirRequest {
  method: HttpMethod;
  /** Path below the FHIR base, without leading slash: `Patient/123/_history/2`. */
  path: string;
  query: Record<string, string | string[]>;
  body?: unknown;
  ifMatch?: string;
  /** Conditional create criteria (`If-None-Exist` header, or a bundle entry's request.ifNoneExist). */
  ifNoneExist?: string;
  prefer?: string;
  /** The id a transaction already gave a POST entry, so references to it could be rewritten first. */
  assignedId?: string;
  /**
   * Set by a transaction for its entries: the references to this server a write carries go here, to be
   * looked up once every entry is written (a later entry may create the target), instead of at once.
   */
  deferReferences?: (references: LocalReference[]) => void;
  /**
   * Set by a transaction for its entries: what a delete removed goes here, to be checked for resources still
   * referencing it once every entry has run (a later entry may delete the referrer or drop its reference).
   */
  deferDeleted?: (target: string) => void;
  /**
   * Profiles the body must conform to as if it claimed them: those the profile claimed by the entry's Bundle
   * requires of the entry's resource (a bundle entry's only).
   */
  requiredProfiles?: readonly string[];
  /** `X-Security-Context` (R4 binary.html#security): the resource whose access rules a Binary follows. */
  securityContext?: string;
  /**
   * Who the request is made for and what it may see, built by the transport (all access when absent).
   * The router runs the interaction on the store bound to it; a bundle's entries run on the bundle's.
   */
  access?: AccessContext;
  /** Absolute FHIR base URL (no trailing slash), for fullUrl, Location and paging links. */
  baseUrl: string;
  /**
   * The caller takes a Binary's content as itself (R4 binary.html): a read of a Binary then answers a
   * StoredBinary, whose bytes the transport streams, instead of the resource with its base64 `data`.
   */
  rawBinary?: boolean;
  /**
   * The caller writes the response out after the request's store is done with (HTTP, not a bundle entry):
   * a read of a Binary as FHIR JSON then answers a StoredBinary too, whose bytes the transport streams
   * into `data`, rather than the whole base64 text, which a large Binary cannot be.
   */
  streamBinary?: boolean;
}

/** What the caller asked to get back (R4 http.html#ops, `Prefer: return=`). */
export type ReturnPreference = 'minimal' | 'representation' | 'OperationOutcome';

export interface FhirResponse {
  status: number;
  /** The body to send, already chosen according to `Prefer: return`. */
  body?: ResponseResource;
  headers: Record<string, string>;
}

/** A request body in a media type the server does not read; refused with 415 by the interaction that needs it. */
export class UnsupportedBody {
  constructor(readonly mediaType: string) {}
}

/** A form-encoded body (`POST [type]/_search`, R4 http.html#search): its parameters, in order. */
export class FormParameters {
  constructor(readonly entries: Array<[string, string]>) {}
}

/** A JSON Patch document (`application/json-patch+json`, RFC 6902). */
export class JsonPatchBody {
  constructor(readonly operations: unknown) {}
}

/**
 * Bytes sent as themselves (a PDF posted to /Binary): R4 binary.html's native form. `bytes` is the
 * request body as it arrives, read once, by the write that stores it; it fails (413) past the body limit.
 */
export class RawBody {
  constructor(
    readonly contentType: string,
    readonly bytes: AsyncIterable<Uint8Array>,
  ) {}
}

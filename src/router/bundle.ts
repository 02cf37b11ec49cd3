import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from 'fhir/r4';
import { FhirError, operationOutcome, withMoreIssues, type Issue } from '../fhir/outcome.ts';
import { ResourceText, resourceObject, type ResponseBundle, type ResponseBundleEntry } from '../fhir/resource-text.ts';
import { isServedResourceType } from '../fhir/resource-types.ts';
import { isError } from '../fhir/validation/validator.ts';
import { StoredResource, type ResourceStore } from '../store/resource-store.ts';
import { parseCondition, severalMatches, type Condition } from './conditional.ts';
import { conditionalReferences } from './conditional-references.ts';
import { versionHeaders } from './crud.ts';
import type { HandlerContext } from './context.ts';
import { missingTargets, REFERRERS_NAMED, stillReferenced, TRAIL_TYPES, unknownTargets, type LocalReference } from './references.ts';
import { findReplacements, supersedeReplaced } from './replacements.ts';
import type { FhirRequest, FhirResponse, HttpMethod } from './request.ts';

/** R4 http.html#trules: deletes, then creates, then updates and patches, then reads. */
const PROCESSING_ORDER: Record<HttpMethod, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3, HEAD: 3 };

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  400: '400 Bad Request',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  410: '410 Gone',
  412: '412 Precondition Failed',
  415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity',
};

interface Entry {
  index: number;
  method: HttpMethod;
  /** The entry's URL below the base, query included: `Patient`, `Patient/1`, `Patient?identifier=…`. */
  url: string;
  fullUrl?: string;
  resource?: Resource;
  ifMatch?: string;
  ifNoneExist?: string;
  /** Profiles the Bundle's claimed profile requires of this entry's resource. */
  requiredProfiles?: string[];
}

/**
 * transaction and batch Bundles (R4 http.html#transaction). Each entry becomes a FhirRequest that the
 * router handles exactly as it would over HTTP. A transaction runs all of them in one database
 * transaction, after giving every created resource its id and rewriting the bundle's internal
 * references (`urn:uuid:`, `urn:oid:`, conditional `Type?criteria`) to `Type/id`.
 */
export async function processBundle(kind: 'transaction' | 'batch', request: FhirRequest, ctx: HandlerContext): Promise<ResponseBundle> {
  const claimed = checkClaimedProfiles(request.body, ctx);
  const entries = readEntries(request.body, request.baseUrl, ctx.deps.limits.maxEntries);
  entries.forEach((entry, index) => {
    const required = claimed?.entryProfiles[index];
    if (required?.length && (entry.method === 'POST' || entry.method === 'PUT')) entry.requiredProfiles = required;
  });
  const responses = kind === 'batch' ? await runBatch(entries, request, ctx) : await runTransaction(entries, request, ctx);
  const warnings = warningsByEntry(claimed?.warnings ?? [], responses.length);
  return {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: kind === 'batch' ? 'batch-response' : 'transaction-response',
    entry: responses.map((response, index) => toResponseEntry(response, warnings[index])),
  };
}

/**
 * R4 has no Bundle-level outcome in a transaction-response: `entry.response.outcome` carries "hints and warnings
 * produced as part of processing this entry" (bundle.html), so each warning of the Bundle's claimed profile goes to
 * the entry its expression names, and one about the Bundle itself to the first entry.
 */
function warningsByEntry(warnings: Issue[], count: number): Issue[][] {
  const byEntry = Array.from({ length: count }, (): Issue[] => []);
  for (const issue of warnings) {
    const named = /^Bundle\.entry\[(\d+)\]/.exec(issue.expression?.[0] ?? '');
    const index = named ? Number(named[1]) : 0;
    byEntry[index < count ? index : 0]?.push(issue);
  }
  return byEntry;
}

/**
 * A Bundle claiming a profile (IHE MHD / PDSm provide-document bundle) is held to it before anything runs:
 * its slices, cardinalities and constraints (422 with the issues otherwise). Its entries' resources are not
 * validated here: each is when its entry runs, against the profile its slice requires besides its own claims.
 */
function checkClaimedProfiles(body: unknown, ctx: HandlerContext): { entryProfiles: string[][]; warnings: Issue[] } | undefined {
  const claims = (body as Bundle | undefined)?.meta?.profile;
  if (!Array.isArray(claims) || claims.length === 0 || !ctx.deps.validator.checkBundleProfiles) return undefined;
  const { issues, entryProfiles } = ctx.deps.validator.checkBundleProfiles(body);
  if (issues.some(isError)) throw new FhirError(422, issues);
  return { entryProfiles, warnings: issues };
}

async function runBatch(entries: Entry[], request: FhirRequest, ctx: HandlerContext): Promise<FhirResponse[]> {
  const responses: FhirResponse[] = [];
  // Independent entries, each its own transaction; a failure is that entry's answer, not the batch's.
  for (const entry of entries) {
    responses.push(await ctx.handle(entryRequest(entry, request), ctx.store));
    entry.resource = undefined;
  }
  return responses;
}

async function runTransaction(entries: Entry[], request: FhirRequest, ctx: HandlerContext): Promise<FhirResponse[]> {
  return ctx.store.unitOfWork(async (store) => {
    const responses = new Array<FhirResponse>(entries.length);
    const existing = await assignIdentities(entries, store, request, ctx, responses);
    await resolveConditionalReferences(entries, store, request, ctx);
    const replacements = await findReplacements(entries, store, request.baseUrl);

    // Within a step, Binaries first: a DocumentReference's attachment may point at one in the same bundle.
    const ordered = [...entries].sort((a, b) => PROCESSING_ORDER[a.method] - PROCESSING_ORDER[b.method] || binaryFirst(a) - binaryFirst(b) || a.index - b.index);
    // What the entries reference is looked up once all are written, as it will be at commit: an entry may
    // name a resource that a later one creates (an update runs after every create) or deletes.
    const references = new Map<Entry, LocalReference[]>();
    // What the delete entries removed: still referenced once every entry has run, the transaction is refused.
    const deletions = new Map<string, Entry>();
    for (const entry of ordered) {
      if (existing.has(entry.index)) continue;
      const deferReferences = (found: LocalReference[]) => references.set(entry, [...(references.get(entry) ?? []), ...found]);
      const deferDeleted = (target: string) => deletions.set(target, entry);
      const response = await ctx.handle({ ...entryRequest(entry, request), deferReferences, deferDeleted }, store);
      if (response.status >= 400) throw entryFailure(entry, response);
      responses[entry.index] = response;
      // Written (or buffered as text): the entry's object is no longer needed.
      entry.resource = undefined;
    }
    await supersedeReplaced(replacements, store, request, ctx);
    // Last: a target may be written by any entry, or superseded, before the references to it are looked up.
    await checkDeferredReferences(references, store);
    await checkDeletions(deletions, store);
    return responses;
  });
}

/** Every entry's references to this server, looked up together (one query): each missing one fails its entry. */
async function checkDeferredReferences(references: Map<Entry, LocalReference[]>, store: ResourceStore): Promise<void> {
  if (references.size === 0) return;
  const missing = await missingTargets([...references.values()].flat(), store, true);
  if (missing.length === 0) return;
  const failing = new Set(missing);
  const issues = [...references]
    .sort(([a], [b]) => a.index - b.index)
    .flatMap(([entry, found]) => {
      const own = found.filter((reference) => failing.has(reference));
      return own.length === 0 ? [] : entryIssues(entry, errorResponse(unknownTargets(own)));
    });
  throw new FhirError(422, issues);
}

/**
 * The resources the transaction's deletes removed that live resources still reference, its own writes
 * counted (a referrer deleted or updated to drop the reference in it no longer holds one): 409 naming the
 * delete entry and the referrers (references.ts stillReferenced).
 */
async function checkDeletions(deletions: Map<string, Entry>, store: ResourceStore): Promise<void> {
  if (deletions.size === 0) return;
  const referrers = await store.referrers([...deletions.keys()], REFERRERS_NAMED + 1, TRAIL_TYPES);
  if (referrers.length === 0) return;
  const first = deletions.get(referrers[0]!.target)!;
  throw entryFailure(first, errorResponse(stillReferenced(referrers)));
}

/**
 * Decides the identity of every entry that creates or updates, before anything is written, so that
 * references between entries can be rewritten: POSTs get a new id (or, with ifNoneExist matching, the
 * existing resource, answered 200 without writing), conditional PUTs the id they match.
 */
async function assignIdentities(entries: Entry[], store: ResourceStore, request: FhirRequest, ctx: HandlerContext, responses: FhirResponse[]): Promise<Set<number>> {
  const identities = new Map<string, string>();
  const existing = new Set<number>();
  const conditions = new Map<Entry, Condition>();
  for (const entry of entries) {
    const [path = '', query] = splitUrl(entry.url);
    const type = path.split('/')[0]!;
    if (!entry.resource || !isServedResourceType(type)) continue;
    const criteria = entry.method === 'POST' ? entry.ifNoneExist : entry.method === 'PUT' && path.split('/')[1] === undefined ? query : undefined;
    if (criteria) {
      await authoriseMatching(entry, type, criteria, request, ctx);
      conditions.set(entry, entryCondition(entry, type, criteria, request, ctx));
    }
  }
  // Every condition locked (in one order) before any is matched: see ResourceStore.match.
  const matched = await store.match([...conditions.values()], { lock: true });
  const matchesOf = new Map([...conditions.keys()].map((entry, index) => [entry, matched[index]!]));
  for (const entry of entries) {
    const [path = ''] = splitUrl(entry.url);
    const type = path.split('/')[0]!;
    const condition = conditions.get(entry);
    if (entry.method === 'POST' && entry.resource && isServedResourceType(type)) {
      let id: string | undefined;
      if (condition) {
        const matches = matchesOf.get(entry)!;
        if (matches.length > 1) throw entryFailure(entry, errorResponse(severalMatches(condition, matches, 'nothing created')));
        if (matches.length === 1) {
          id = matches[0]!;
          existing.add(entry.index);
          const stored = await store.read(type, id);
          responses[entry.index] = { status: 200, body: stored, headers: versionHeaders(stored, request.baseUrl) };
          // Answered here, not by the router: the trail still gets the entry, as the create it was.
          for (const hook of ctx.deps.hooks ?? []) await hook.audit?.({ kind: 'create', resourceType: type }, entryRequest(entry, request), responses[entry.index]!, store);
        }
      }
      if (id === undefined) {
        id = randomUUID();
        entry.resource = { ...entry.resource, id };
        (entry as Entry & { assignedId?: string }).assignedId = id;
      }
      if (entry.fullUrl) identities.set(entry.fullUrl, `${type}/${id}`);
    } else if (entry.method === 'PUT' && entry.resource && isServedResourceType(type)) {
      let id = path.split('/')[1];
      if (condition) {
        const matches = matchesOf.get(entry)!;
        if (matches.length > 1) throw entryFailure(entry, errorResponse(severalMatches(condition, matches, 'nothing updated')));
        id = matches[0] ?? entry.resource.id ?? randomUUID();
        // From here on this is a plain update of a known id (or an update-as-create).
        entry.url = `${type}/${id}`;
        entry.resource = { ...entry.resource, id };
      }
      if (entry.fullUrl && id) identities.set(entry.fullUrl, `${type}/${id}`);
    }
  }
  for (const entry of entries) if (entry.resource) entry.resource = rewriteReferences(entry.resource, identities) as Resource;
  return existing;
}

/** `"reference": "Patient?identifier=…"` inside a transaction: resolved to the one resource it matches. */
async function resolveConditionalReferences(entries: Entry[], store: ResourceStore, request: FhirRequest, ctx: HandlerContext): Promise<void> {
  const resolved = new Map<string, string>();
  for (const entry of entries) {
    if (!entry.resource) continue;
    for (const reference of conditionalReferences(entry.resource)) {
      if (resolved.has(reference)) continue;
      const [type = '', query = ''] = splitUrl(reference);
      if (!isServedResourceType(type)) throw entryFailure(entry, errorResponse(FhirError.badRequest(`Conditional reference '${reference}': ${type} is not a type this server holds`)));
      await authoriseMatching(entry, type, query, request, ctx);
      const [matches = []] = await store.match([entryCondition(entry, type, query, request, ctx)]);
      if (matches.length !== 1) {
        throw entryFailure(entry, errorResponse(FhirError.preconditionFailed(`Conditional reference '${reference}' matches ${matches.length === 0 ? 'no' : 'several'} ${type} resources; it must match exactly one`)));
      }
      resolved.set(reference, `${type}/${matches[0]}`);
    }
  }
  if (resolved.size > 0) for (const entry of entries) if (entry.resource) entry.resource = rewriteReferences(entry.resource, resolved) as Resource;
}

/**
 * What a transaction reads before its entries run (the matches of `ifNoneExist` and conditional updates,
 * conditional references) passes the authorisation of the search it is: a caller who may not search a
 * type does not learn, through a transaction, which of its resources match. A refusal fails the entry.
 */
async function authoriseMatching(entry: Entry, type: string, criteria: string, bundleRequest: FhirRequest, ctx: HandlerContext): Promise<void> {
  const hooks = ctx.deps.hooks ?? [];
  if (hooks.length === 0) return;
  const search: FhirRequest = { ...bundleRequest, method: 'GET', path: type, query: queryParameters(criteria), body: undefined, ifMatch: undefined, ifNoneExist: undefined, assignedId: undefined };
  try {
    for (const hook of hooks) await hook.authorise?.({ kind: 'search-type', resourceType: type }, search);
  } catch (error) {
    throw entryFailure(entry, errorResponse(error));
  }
}

/** An entry's search criteria, parsed; criteria that do not parse fail the transaction as that entry's error. */
function entryCondition(entry: Entry, type: string, criteria: string, request: FhirRequest, ctx: HandlerContext): Condition {
  try {
    return parseCondition(ctx.deps, type, criteria, request.baseUrl);
  } catch (error) {
    throw entryFailure(entry, errorResponse(error));
  }
}

/**
 * Replaces every use of a bundle-internal identity by the resource's `Type/id`: any string equal to it
 * (Reference.reference, Attachment.url, extensions' values…) and its occurrences in narrative XHTML.
 */
export function rewriteReferences(value: unknown, identities: Map<string, string>, key?: string): unknown {
  if (identities.size === 0) return value;
  if (typeof value === 'string') {
    const mapped = identities.get(value);
    if (mapped !== undefined) return mapped;
    if (key === 'div') {
      let div = value;
      for (const [from, to] of identities) if (div.includes(from)) div = div.split(from).join(to);
      return div;
    }
    return value;
  }
  // Copy on write: an array or object none of whose values change is returned as it is.
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let index = 0; index < value.length; index++) {
      const item = rewriteReferences(value[index], identities, key);
      if (item !== value[index]) (copy ??= [...value])[index] = item;
    }
    return copy ?? value;
  }
  if (value && typeof value === 'object') {
    let copy: Record<string, unknown> | undefined;
    for (const [k, item] of Object.entries(value)) {
      const rewritten = rewriteReferences(item, identities, k);
      if (rewritten !== item) (copy ??= { ...(value as Record<string, unknown>) })[k] = rewritten;
    }
    return copy ?? value;
  }
  return value;
}

function readEntries(body: unknown, baseUrl: string, maxEntries: number): Entry[] {
  const bundle = body as Bundle;
  if (!bundle || typeof bundle !== 'object' || bundle.resourceType !== 'Bundle') throw FhirError.badRequest('POST to the base takes a Bundle', ['Bundle']);
  const raw = bundle.entry ?? [];
  if (!Array.isArray(raw)) throw FhirError.badRequest('Bundle.entry must be an array', ['Bundle.entry']);
  if (raw.length > maxEntries) {
    throw new FhirError(413, [{ code: 'too-long', diagnostics: `The bundle has ${raw.length} entries; this server takes at most ${maxEntries} per bundle`, expression: ['Bundle.entry'] }]);
  }
  // The entries are taken out of the body, so that each entry's resource can go once it is written,
  // rather than the whole parsed Bundle staying until the answer is sent.
  delete bundle.entry;
  return raw.map((entry: BundleEntry, index) => {
    const where = `Bundle.entry[${index}]`;
    const method = entry?.request?.method;
    const url = entry?.request?.url;
    if (!method || !['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) throw FhirError.badRequest(`${where}.request.method must be GET, HEAD, POST, PUT, PATCH or DELETE`, [`${where}.request.method`], 'required');
    if (typeof url !== 'string' || url.length === 0) throw FhirError.badRequest(`${where}.request.url is required`, [`${where}.request.url`], 'required');
    const resource = entry.resource;
    if ((method === 'POST' || method === 'PUT') && (!resource || typeof resource !== 'object')) {
      throw FhirError.badRequest(`${where}: a ${method} entry carries a resource`, [`${where}.resource`], 'required');
    }
    return {
      index,
      method: method as HttpMethod,
      url: url.startsWith(`${baseUrl}/`) ? url.slice(baseUrl.length + 1) : url.replace(/^\//, ''),
      ...(entry.fullUrl ? { fullUrl: entry.fullUrl } : {}),
      ...(resource ? { resource: resource as Resource } : {}),
      ...(entry.request?.ifMatch ? { ifMatch: entry.request.ifMatch } : {}),
      ...(entry.request?.ifNoneExist ? { ifNoneExist: entry.request.ifNoneExist } : {}),
    };
  });
}

function entryRequest(entry: Entry & { assignedId?: string }, bundleRequest: FhirRequest): FhirRequest {
  const [path = '', query = ''] = splitUrl(entry.url);
  return {
    method: entry.method,
    path,
    query: queryParameters(query),
    body: entry.resource,
    ifMatch: entry.ifMatch,
    // A transaction has resolved ifNoneExist already; a batch entry does it itself.
    ifNoneExist: entry.assignedId ? undefined : entry.ifNoneExist,
    requiredProfiles: entry.requiredProfiles,
    assignedId: entry.assignedId,
    prefer: bundleRequest.prefer,
    baseUrl: bundleRequest.baseUrl,
    // Each entry is authorised as the bundle's caller: the hooks decide on the caller's access, not all access.
    ...(bundleRequest.access ? { access: bundleRequest.access } : {}),
  };
}

function queryParameters(query: string): Record<string, string | string[]> {
  const parameters: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(query)) {
    const previous = parameters[name];
    parameters[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return parameters;
}

function entryFailure(entry: Entry, response: FhirResponse): FhirError {
  return new FhirError(response.status, entryIssues(entry, response));
}

/** The issues of an entry's failure, each saying which entry it is. */
function entryIssues(entry: Entry, response: FhirResponse): Issue[] {
  const outcome = response.body as OperationOutcome | undefined;
  const issues = (outcome?.issue ?? []).map((issue) => ({
    severity: issue.severity,
    code: issue.code,
    diagnostics: `Bundle.entry[${entry.index}] (${entry.method} ${entry.url}): ${issue.diagnostics ?? ''}`,
    expression: [`Bundle.entry[${entry.index}]`, ...(issue.expression ?? [])],
  }));
  return issues.length > 0 ? issues : [{ code: 'processing', diagnostics: `Bundle.entry[${entry.index}] failed` }];
}

function errorResponse(error: unknown): FhirResponse {
  if (error instanceof FhirError) return { status: error.status, body: error.outcome, headers: error.headers };
  throw error;
}

function toResponseEntry(response: FhirResponse, warnings: Issue[] = []): ResponseBundleEntry {
  const resource = response.body;
  const isOutcome = resource?.resourceType === 'OperationOutcome';
  const outcome = isOutcome ? withMoreIssues(resourceObject(resource) as OperationOutcome, warnings)
    : warnings.length > 0 ? operationOutcome(warnings) : undefined;
  const lastUpdated = isOutcome ? undefined
    : resource instanceof StoredResource ? resource.lastUpdated
    : resource instanceof ResourceText ? resource.resource.meta?.lastUpdated
    : resource?.meta?.lastUpdated;
  return {
    ...(resource && !isOutcome ? { fullUrl: `${response.headers.location?.replace(/\/_history\/.*$/, '') ?? ''}` || undefined, resource } : {}),
    response: {
      status: STATUS_TEXT[response.status] ?? String(response.status),
      ...(response.headers.location ? { location: response.headers.location } : {}),
      ...(response.headers.etag ? { etag: response.headers.etag } : {}),
      ...(lastUpdated ? { lastModified: lastUpdated } : {}),
      ...(outcome ? { outcome } : {}),
    },
  };
}

const binaryFirst = (entry: Entry) => (entry.url.startsWith('Binary') ? 0 : 1);

function splitUrl(url: string): [string, string | undefined] {
  const q = url.indexOf('?');
  return q >= 0 ? [url.slice(0, q), url.slice(q + 1)] : [url, undefined];
}

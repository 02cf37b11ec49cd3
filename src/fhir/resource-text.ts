import type { Bundle, BundleEntry, Resource } from 'fhir/r4';

/**
 * A resource held as its JSON text (as the store keeps it), parsed only when someone needs the object.
 * A response that carries it writes the text out as it is: a search page or a transaction response of
 * fifty resources then costs no JSON.parse and no JSON.stringify of any of them.
 */
export class ResourceText {
  constructor(
    readonly resourceType: string,
    readonly id: string,
    readonly json: string,
    private parsed?: Resource,
  ) {}

  get resource(): Resource {
    this.parsed ??= JSON.parse(this.json) as Resource;
    return this.parsed;
  }

  /**
   * Bytes that belong in the resource's `data` but are not in its text (a Binary read as FHIR JSON, its
   * bytes stored apart): written out as base64 while the response goes, never held whole.
   */
  dataBytes(): AsyncIterable<Uint8Array> | undefined {
    return undefined;
  }
}

/** A resource a response carries: an object, or JSON text to be written out as it is. */
export type ResponseResource = Resource | ResourceText | ResponseBundle;

/** A Bundle the server answers with: its entries' resources may be held as text. */
export interface ResponseBundle extends Omit<Bundle, 'entry'> {
  entry?: ResponseBundleEntry[];
}

export interface ResponseBundleEntry extends Omit<BundleEntry, 'resource'> {
  resource?: ResponseResource;
}

/** The object form, for code that must look inside (every ResourceText parsed, nested Bundles included). */
export function resourceObject(value: ResponseResource): Resource {
  if (value instanceof ResourceText) return value.resource;
  if (!isBundleWithEntries(value)) return value as Resource;
  return { ...value, entry: value.entry.map((entry) => (entry.resource ? { ...entry, resource: resourceObject(entry.resource) } : entry)) } as Bundle;
}

/**
 * JSON text of a resource, as JSON.stringify would write its object form, a ResourceText as it is.
 * `indent` (for `_pretty`) re-serialises everything. A Bundle holding texts is written by `jsonPieces`.
 */
export function jsonText(value: ResponseResource, indent?: number): string {
  if (indent !== undefined || isBundleWithEntries(value)) return JSON.stringify(resourceObject(value), null, indent);
  if (value instanceof ResourceText) return value.json;
  return JSON.stringify(value);
}

/** Pieces a response is written in: a Bundle of 10,000 entries is not first made one string. */
const PIECE_SIZE = 64 * 1024;

/**
 * The JSON text of a response resource, as JSON.stringify would write its object form, with the text of
 * every ResourceText spliced in unchanged, in pieces of about 64 KB: entry after entry, and a resource's
 * streamed `data` base64-encoded chunk by chunk. No piece holds the whole, so
 * no response is bounded by V8's longest string (a 200 MB Binary is 280 million base64 characters).
 */
export async function* jsonPieces(value: ResponseResource, indent?: number): AsyncGenerator<string> {
  let pending = '';
  for await (const part of jsonParts(value, indent)) {
    pending += part;
    if (pending.length >= PIECE_SIZE) {
      yield pending;
      pending = '';
    }
  }
  if (pending !== '') yield pending;
}

async function* jsonParts(value: ResponseResource, indent: number | undefined): AsyncGenerator<string> {
  const bytes = value instanceof ResourceText ? value.dataBytes() : undefined;
  if (bytes) {
    // The stored text has no `data`: it goes in last, as the read of a Binary always put it.
    const text = jsonText(value, indent);
    const head = text.slice(0, text.lastIndexOf('}')).trimEnd();
    const comma = head.endsWith('{') ? '' : ',';
    yield indent === undefined ? `${head}${comma}"data":"` : `${head}${comma}\n${' '.repeat(indent)}"data": "`;
    yield* base64Pieces(bytes);
    yield indent === undefined ? '"}' : '"\n}';
    return;
  }
  if (indent !== undefined || !isBundleWithEntries(value)) {
    yield jsonText(value, indent);
    return;
  }
  yield* objectParts(value, (key, member) => (key === 'entry' ? arrayParts(member as ResponseBundleEntry[], entryParts) : undefined));
}

function entryParts(entry: ResponseBundleEntry): AsyncGenerator<string> {
  return objectParts(entry, (key, member) => (key === 'resource' && member !== undefined ? jsonParts(member as ResponseResource, undefined) : undefined));
}

/**
 * `{"key":value,…}` in the object's own key order, skipping what JSON.stringify skips (undefined,
 * functions, symbols); `special` writes the members it knows, part by part, returning undefined for the others.
 */
async function* objectParts(object: object, special: (key: string, member: unknown) => AsyncGenerator<string> | undefined): AsyncGenerator<string> {
  let first = true;
  for (const [key, member] of Object.entries(object)) {
    const parts = special(key, member);
    const written = parts ? undefined : JSON.stringify(member);
    if (!parts && written === undefined) continue;
    yield `${first ? '{' : ','}${JSON.stringify(key)}:`;
    if (parts) yield* parts;
    else yield written!;
    first = false;
  }
  yield first ? '{}' : '}';
}

async function* arrayParts<T>(items: T[], parts: (item: T) => AsyncGenerator<string>): AsyncGenerator<string> {
  yield '[';
  for (let index = 0; index < items.length; index++) {
    if (index > 0) yield ',';
    yield* parts(items[index]!);
  }
  yield ']';
}

/** Base64 of a stream of bytes, encoded in runs of a multiple of 3 bytes so that no padding falls inside. */
async function* base64Pieces(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  let carry = Buffer.alloc(0);
  for await (const chunk of bytes) {
    const joined = carry.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([carry, chunk]);
    const whole = joined.length - (joined.length % 3);
    if (whole > 0) yield joined.subarray(0, whole).toString('base64');
    carry = Buffer.from(joined.subarray(whole));
  }
  if (carry.length > 0) yield carry.toString('base64');
}

function isBundleWithEntries(value: ResponseResource): value is ResponseBundle & { entry: ResponseBundleEntry[] } {
  return value.resourceType === 'Bundle' && Array.isArray((value as ResponseBundle).entry);
}

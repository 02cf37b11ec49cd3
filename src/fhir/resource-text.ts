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

/**
 * Characters of a piece a response is written in: a Bundle of 10,000 entries is not first made one string.
 * Small enough that a piece stays an ordinary V8 string (at most 32 KB as UTF-16) rather than one in the
 * large-object space, which each piece of 64 K characters of French text was: allocating there cost ~0.7 ms
 * a piece (measured, Node 20), ten times the copying.
 */
const PIECE_SIZE = 16 * 1024;

/**
 * The JSON text of a response resource, as JSON.stringify would write its object form, with the text of
 * every ResourceText spliced in unchanged, in pieces of about PIECE_SIZE characters: entry after entry, and a resource's
 * streamed `data` base64-encoded chunk by chunk. No piece holds the whole, so
 * no response is bounded by V8's longest string (a 200 MB Binary is 280 million base64 characters).
 * The text is put together synchronously, an entry at a time (only the entry being written is held as new
 * text), and only streamed bytes are waited for: a page of entries costs one promise per piece.
 */
export async function* jsonPieces(value: ResponseResource, indent?: number): AsyncGenerator<string> {
  const pieces = new Pieces();
  for (const parts of partsByEntry(value, indent)) {
    for (const part of parts) {
      if (typeof part === 'string') {
        if (pieces.add(part)) yield pieces.take();
      } else {
        for await (const chunk of base64Pieces(part.bytes)) if (pieces.add(chunk)) yield pieces.take();
      }
    }
  }
  if (!pieces.empty) yield pieces.take();
}

/** Text gathered into pieces of PIECE_SIZE characters or so. */
class Pieces {
  private parts: string[] = [];
  private length = 0;

  /** Adds `text`; true when a piece is full. */
  add(text: string): boolean {
    this.parts.push(text);
    this.length += text.length;
    return this.length >= PIECE_SIZE;
  }

  take(): string {
    const piece = this.parts.join('');
    this.parts = [];
    this.length = 0;
    return piece;
  }

  get empty(): boolean {
    return this.length === 0;
  }
}

/** Bytes written out as base64 as they come: a Binary's streamed `data`. */
class StreamedBytes {
  constructor(readonly bytes: AsyncIterable<Uint8Array>) {}
}

/** A Bundle's entries, written one at a time (partsByEntry). */
class Entries {
  constructor(readonly entries: ResponseBundleEntry[]) {}
}

/** A part of a response's JSON text. */
type JsonPart = string | StreamedBytes;

/** The parts of a response's JSON text: those of a top-level Bundle's entries an entry at a time, the rest around them. */
function* partsByEntry(value: ResponseResource, indent: number | undefined): Generator<JsonPart[]> {
  const top: Array<JsonPart | Entries> = [];
  resourceParts(value, indent, top, true);
  let parts: JsonPart[] = [];
  for (const part of top) {
    if (!(part instanceof Entries)) {
      parts.push(part);
      continue;
    }
    parts.push('[');
    for (let index = 0; index < part.entries.length; index++) {
      if (index > 0) parts.push(',');
      entryParts(part.entries[index]!, parts);
      yield parts;
      parts = [];
    }
    parts.push(']');
  }
  yield parts;
}

/** Appends the parts of a resource to `out`; a Bundle's entries as one Entries part when `lazy`. */
function resourceParts(value: ResponseResource, indent: number | undefined, out: Array<JsonPart | Entries>, lazy: boolean): void {
  const bytes = value instanceof ResourceText ? value.dataBytes() : undefined;
  if (bytes) {
    // The stored text has no `data`: it goes in last, as the read of a Binary always put it.
    const text = jsonText(value, indent);
    const head = text.slice(0, text.lastIndexOf('}')).trimEnd();
    const comma = head.endsWith('{') ? '' : ',';
    out.push(indent === undefined ? `${head}${comma}"data":"` : `${head}${comma}\n${' '.repeat(indent)}"data": "`, new StreamedBytes(bytes), indent === undefined ? '"}' : '"\n}');
    return;
  }
  if (indent !== undefined || !isBundleWithEntries(value)) {
    out.push(jsonText(value, indent));
    return;
  }
  objectParts(value, out, (key, member) => {
    if (key !== 'entry') return false;
    const entries = member as ResponseBundleEntry[];
    if (lazy) out.push(new Entries(entries));
    else {
      out.push('[');
      entries.forEach((entry, index) => {
        if (index > 0) out.push(',');
        entryParts(entry, out);
      });
      out.push(']');
    }
    return true;
  });
}

function entryParts(entry: ResponseBundleEntry, out: Array<JsonPart | Entries>): void {
  objectParts(entry, out, (key, member) => {
    if (key !== 'resource' || member === undefined) return false;
    resourceParts(member as ResponseResource, undefined, out, false);
    return true;
  });
}

/**
 * `{"key":value,…}` in the object's own key order, skipping what JSON.stringify skips (undefined,
 * functions, symbols); `special` appends the members it knows (returning true), after their key.
 */
function objectParts(object: object, out: Array<JsonPart | Entries>, special: (key: string, member: unknown) => boolean): void {
  let first = true;
  for (const [key, member] of Object.entries(object)) {
    const keyText = `${first ? '{' : ','}${JSON.stringify(key)}:`;
    const at = out.length;
    out.push(keyText);
    if (!special(key, member)) {
      const written = JSON.stringify(member);
      if (written === undefined) {
        out.length = at;
        continue;
      }
      out.push(written);
    }
    first = false;
  }
  out.push(first ? '{}' : '}');
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

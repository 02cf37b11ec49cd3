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
 * JSON text of a response resource, as JSON.stringify would write its object form, with the text of every
 * ResourceText spliced in unchanged. `indent` (for `_pretty`) re-serialises everything instead.
 */
export function jsonText(value: ResponseResource, indent?: number): string {
  if (indent !== undefined) return JSON.stringify(resourceObject(value), null, indent);
  if (value instanceof ResourceText) return value.json;
  if (!isBundleWithEntries(value)) return JSON.stringify(value);
  return objectText(value, (key, member) => (key === 'entry' ? `[${(member as ResponseBundleEntry[]).map(entryText).join(',')}]` : undefined));
}

function entryText(entry: ResponseBundleEntry): string {
  return objectText(entry, (key, member) => (key === 'resource' && member !== undefined ? jsonText(member as ResponseResource) : undefined));
}

/**
 * `{"key":value,…}` in the object's own key order, skipping what JSON.stringify skips; `special` writes the
 * members it knows (returning undefined for the others).
 */
function objectText(object: object, special: (key: string, member: unknown) => string | undefined): string {
  let text = '';
  for (const [key, member] of Object.entries(object)) {
    const written = special(key, member) ?? JSON.stringify(member);
    if (written === undefined) continue; // undefined, functions and symbols are left out
    text += `${text === '' ? '' : ','}${JSON.stringify(key)}:${written}`;
  }
  return `{${text}}`;
}

function isBundleWithEntries(value: ResponseResource): value is ResponseBundle & { entry: ResponseBundleEntry[] } {
  return value.resourceType === 'Bundle' && Array.isArray((value as ResponseBundle).entry);
}

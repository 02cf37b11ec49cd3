import type { Issue } from '../outcome.ts';

type Json = Record<string, unknown>;

const ABSOLUTE_URI = /^[a-z][a-z0-9+.-]*:/i;
/** Relations of Bundle.link that describe the bundle itself or its paging, hence meaningful once. */
const SINGLE_LINK_RELATIONS = new Set(['self', 'first', 'previous', 'next', 'last']);
const NARRATIVE_LINK = 'http://hl7.org/fhir/StructureDefinition/narrativeLink';

/**
 * Bundle rules the R4 definitions state in prose (bundle.html): fullUrls are absolute, paging/self links
 * appear once, references inside a bundle resolve to one entry (§3.3.1.4.3; in a document, to some entry),
 * and narrative links point at exactly one element of the target's narrative.
 */
export function bundleIssues(bundle: Json): Issue[] {
  const entries = ((bundle.entry as Json[] | undefined) ?? []).filter((entry) => entry && typeof entry === 'object');
  return [...fullUrlIssues(entries), ...linkIssues(bundle), ...referenceIssues(bundle, entries), ...narrativeLinkIssues(entries)];
}

function error(expression: string, diagnostics: string, code: Issue['code'] = 'invalid'): Issue {
  return { severity: 'error', code, expression: [expression], diagnostics: `${expression}: ${diagnostics}` };
}

function fullUrlIssues(entries: Json[]): Issue[] {
  const issues: Issue[] = [];
  entries.forEach((entry, index) => {
    const fullUrl = entry.fullUrl;
    if (typeof fullUrl === 'string' && !ABSOLUTE_URI.test(fullUrl)) {
      issues.push(error(`Bundle.entry[${index}].fullUrl`, `The fullUrl must be an absolute URL (not '${fullUrl}')`));
    }
  });
  return issues;
}

function linkIssues(bundle: Json): Issue[] {
  const issues: Issue[] = [];
  const seen = new Set<string>();
  ((bundle.link as Json[] | undefined) ?? []).forEach((link, index) => {
    const relation = link?.relation;
    if (typeof relation !== 'string' || !SINGLE_LINK_RELATIONS.has(relation)) return;
    if (seen.has(relation)) issues.push(error(`Bundle.link[${index}]`, `The link relationship type '${relation}' can only occur once`));
    seen.add(relation);
  });
  return issues;
}

interface Reference {
  reference: string;
  expression: string;
}

/** References in an entry's resource (not into contained resources: `#id` resolves inside the resource). */
function referencesIn(value: unknown, expression: string, into: Reference[]): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) => referencesIn(item, `${expression}[${index}]`, into));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const object = value as Json;
  if (typeof object.reference === 'string' && !object.reference.startsWith('#')) into.push({ reference: object.reference, expression });
  for (const [key, child] of Object.entries(object)) {
    if (key !== 'contained' && typeof child === 'object') referencesIn(child, `${expression}.${key}`, into);
  }
}

function referenceIssues(bundle: Json, entries: Json[]): Issue[] {
  const issues: Issue[] = [];
  const mustResolve = bundle.type === 'document';
  entries.forEach((entry, index) => {
    const references: Reference[] = [];
    referencesIn(entry.resource, `Bundle.entry[${index}].resource`, references);
    for (const { reference, expression } of references) {
      const target = resolveTarget(reference, entry.fullUrl as string | undefined);
      if (!target) continue;
      const matches = entries.filter((candidate) => matchesTarget(candidate, target));
      if (matches.length > 1) {
        issues.push(error(expression, `Found ${matches.length} matches for '${reference}' in the bundle`, 'structure'));
      } else if (matches.length === 0 && mustResolve) {
        issues.push(error(expression, `Can't find '${reference}' in the bundle (a document must contain what it references)`, 'not-found'));
      }
    }
  });
  return issues;
}

interface Target {
  /** Absolute URL to compare with fullUrl, when the reference can be made absolute. */
  url?: string;
  type?: string;
  id?: string;
  version?: string;
}

const RELATIVE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9.-]{1,64})(?:\/_history\/([A-Za-z0-9.-]{1,64}))?$/;

/** bundle.html §3.3.1.4.3: a relative reference is resolved against the base of the referring entry's fullUrl. */
function resolveTarget(reference: string, fullUrl: string | undefined): Target | undefined {
  const history = /^(.*)\/_history\/([^/]+)$/.exec(reference);
  const unversioned = history ? history[1]! : reference;
  const version = history?.[2];
  if (ABSOLUTE_URI.test(reference)) return { url: unversioned, version };
  const relative = RELATIVE.exec(reference);
  if (!relative) return undefined;
  const [, type, id] = relative;
  const base = fullUrl && /^https?:/.test(fullUrl) ? /^(.*\/)[A-Z][A-Za-z]+\/[^/]+$/.exec(fullUrl)?.[1] : undefined;
  return base ? { url: `${base}${type}/${id}`, type, id, version } : { type, id, version };
}

function matchesTarget(entry: Json, target: Target): boolean {
  const resource = entry.resource as Json | undefined;
  if (target.version !== undefined && (resource?.meta as Json | undefined)?.versionId !== target.version) return false;
  if (target.url !== undefined) return entry.fullUrl === target.url;
  return resource?.resourceType === target.type && resource?.id === target.id;
}

function narrativesOf(value: unknown, into: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) narrativesOf(item, into);
  else if (value !== null && typeof value === 'object') {
    for (const [key, child] of Object.entries(value as Json)) {
      if (key === 'div' && typeof child === 'string') into.push(child);
      else if (typeof child === 'object') narrativesOf(child, into);
    }
  }
  return into;
}

/** narrativeLink extensions (`fullUrl#id`) must designate exactly one element of the target entry's narrative. */
function narrativeLinkIssues(entries: Json[]): Issue[] {
  const issues: Issue[] = [];
  entries.forEach((entry, index) => {
    const links: { value: string; expression: string }[] = [];
    collectNarrativeLinks(entry.resource, `Bundle.entry[${index}].resource`, links);
    for (const { value, expression } of links) {
      const hash = value.indexOf('#');
      if (hash < 0) continue;
      const url = value.slice(0, hash);
      const fragment = value.slice(hash + 1);
      const target = entries.find((candidate) => candidate.fullUrl === url);
      if (!target) {
        issues.push(error(expression, `Can't find '${url}' in the bundle (narrative link ${value})`, 'not-found'));
        continue;
      }
      // The fragment may designate an element of any narrative of the target (a Composition's sections have their own).
      const count = narrativesOf(target.resource).reduce((sum, div) => sum + countIds(div, fragment), 0);
      if (count === 0) issues.push(error(expression, `Can't find '${url}' in the bundle: its narrative has no element with id '${fragment}'`, 'not-found'));
      else if (count > 1) issues.push(error(expression, `Found ${count} matches for fragment ${fragment} in resource '${url}' in the bundle`, 'structure'));
    }
  });
  return issues;
}

function collectNarrativeLinks(value: unknown, expression: string, into: { value: string; expression: string }[]): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) => collectNarrativeLinks(item, `${expression}[${index}]`, into));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const object = value as Json;
  if (object.url === NARRATIVE_LINK) {
    const link = object.valueUrl ?? object.valueUri;
    if (typeof link === 'string') into.push({ value: link, expression });
    return;
  }
  for (const [key, child] of Object.entries(object)) if (typeof child === 'object') collectNarrativeLinks(child, `${expression}.${key}`, into);
}

function countIds(xhtml: string, id: string): number {
  const escaped = id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return xhtml.match(new RegExp(`\\sid\\s*=\\s*["']${escaped}["']`, 'g'))?.length ?? 0;
}

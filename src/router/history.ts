import { randomUUID } from 'node:crypto';
import type { Bundle } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { ResponseBundle, ResponseBundleEntry } from '../fhir/resource-text.ts';
import type { HistoryPage, ResourceStore } from '../store/resource-store.ts';
import type { Interaction } from './interaction.ts';
import type { FhirRequest } from './request.ts';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

const STATUS_OF_METHOD = { POST: '201 Created', PUT: '200 OK', PATCH: '200 OK', DELETE: '204 No Content' } as const;

type HistoryInteraction = Extract<Interaction, { kind: 'history-instance' | 'history-type' | 'history-system' }>;

/**
 * History at instance, type or system level (R4 http.html#history): a `history` Bundle, newest first; at type
 * and system level in change-feed order and only as far as the feed's horizon (Repository.history,
 * store/change-feed.ts).
 *
 * What `_since=T` guarantees: the versions whose meta.lastUpdated is T or later; at type and system level,
 * among the writes final when the page is read: a write still in flight, and any write that began after it,
 * is left out until that transaction ends, so a page never shows a later write while an earlier one may
 * still appear under it, and the `next` links walk a fixed list (no version skipped or repeated whatever
 * commits meanwhile; one resource's versions commit in versionId order, so its history needs no horizon). What it
 * cannot guarantee: lastUpdated is stamped before commit, so a write stamped before T can commit after a
 * request made at T. A poller that passes the time of its previous request as `_since` must overlap it by
 * the longest a write can take to commit (a large transaction Bundle: seconds to minutes), and expect
 * versions it has already seen (told apart by versionId); reading the change feed from a cursor needs none of that.
 */
export async function history(interaction: HistoryInteraction, request: FhirRequest, store: ResourceStore, binaryInlineBytes: number): Promise<ResponseBundle> {
  const count = parseCount(single(request, '_count'));
  const since = parseSince(single(request, '_since'));
  const cursor = single(request, '_cursor');

  const page = await store.history({
    resourceType: interaction.kind === 'history-system' ? undefined : interaction.resourceType,
    id: interaction.kind === 'history-instance' ? interaction.id : undefined,
    since,
    before: cursor,
    count,
  });
  return store.withBinaryData(historyBundle(page, request, { _count: String(count), ...(since ? { _since: since } : {}) }, cursor), binaryInlineBytes, request.streamBinary);
}

function historyBundle(page: HistoryPage, request: FhirRequest, applied: Record<string, string>, cursor?: string): ResponseBundle {
  const url = (extra: Record<string, string> = {}) => {
    const query = new URLSearchParams({ ...applied, ...extra }).toString();
    return `${request.baseUrl}/${request.path}${query ? `?${query}` : ''}`;
  };
  const link: Bundle['link'] = [
    { relation: 'self', url: url(cursor === undefined ? {} : { _cursor: cursor }) },
    { relation: 'first', url: url() },
  ];
  if (page.nextBefore !== undefined) link.push({ relation: 'next', url: url({ _cursor: page.nextBefore }) });

  const entry: ResponseBundleEntry[] = page.entries.map((version) => ({
    fullUrl: `${request.baseUrl}/${version.resourceType}/${version.id}`,
    ...(version.resource ? { resource: version.resource } : {}),
    request: {
      method: version.method,
      url: version.method === 'POST' ? version.resourceType : `${version.resourceType}/${version.id}`,
    },
    response: {
      status: STATUS_OF_METHOD[version.method],
      etag: `W/"${version.versionId}"`,
      lastModified: version.lastUpdated,
    },
  }));
  return {
    resourceType: 'Bundle',
    id: randomUUID(),
    meta: { lastUpdated: new Date().toISOString() },
    type: 'history',
    total: page.total,
    link,
    ...(entry.length > 0 ? { entry } : {}),
  };
}

export function single(request: FhirRequest, name: string): string | undefined {
  const value = request.query[name];
  if (Array.isArray(value)) {
    if (value.length > 1) throw FhirError.badRequest(`Parameter ${name} may appear only once`, [name]);
    return value[0];
  }
  return value;
}

export function parseCount(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PAGE_SIZE;
  if (!/^\d{1,9}$/.test(value)) throw FhirError.badRequest(`_count must be a non-negative integer, not '${value}'`, ['_count']);
  return Math.min(Number(value), MAX_PAGE_SIZE);
}

// R4 instant, and the dateTime forms servers commonly accept for _since (a date, or a time with zone).
const SINCE_PATTERN = /^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

function parseSince(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const time = SINCE_PATTERN.test(value) ? Date.parse(value.length === 4 ? `${value}-01-01` : value.length === 7 ? `${value}-01` : value) : NaN;
  if (Number.isNaN(time)) throw FhirError.badRequest(`_since must be an instant such as 2024-01-31T08:00:00Z, not '${value}'`, ['_since']);
  return new Date(time).toISOString();
}

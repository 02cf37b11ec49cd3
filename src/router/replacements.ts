import type { DocumentReference, Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import type { HandlerContext } from './context.ts';
import type { FhirRequest } from './request.ts';

/** A document a transaction's entry replaces (`relatesTo.code = replaces`), as found before the entries run. */
export interface Replacement {
  /** Index of the entry whose DocumentReference replaces it. */
  entryIndex: number;
  id: string;
  versionId: number;
}

const REPLACED = /^DocumentReference\/([A-Za-z0-9\-.]{1,64})$/;

/**
 * The documents replaced by the DocumentReferences a transaction writes (IHE MHD ITI-65; R4 DocumentReference
 * `relatesTo` `replaces`), checked before any entry runs: each must be known and `current`, or the
 * transaction fails (422, naming the entry and its `relatesTo`), as MHD's Document Recipient refuses to
 * replace what is not a current document. References have been rewritten to `Type/id` by then; an absolute
 * one to this server's base counts as the relative one. A document created in the same transaction is not
 * known yet, so cannot be replaced by it.
 */
export async function findReplacements(
  entries: ReadonlyArray<{ index: number; method: string; resource?: Resource }>,
  store: ResourceStore,
  baseUrl: string,
): Promise<Replacement[]> {
  const replacements: Replacement[] = [];
  for (const entry of entries) {
    const resource = entry.resource;
    if ((entry.method !== 'POST' && entry.method !== 'PUT') || resource?.resourceType !== 'DocumentReference') continue;
    for (const [position, relation] of ((resource as DocumentReference).relatesTo ?? []).entries()) {
      if (relation?.code !== 'replaces') continue;
      const where = `Bundle.entry[${entry.index}].resource.relatesTo[${position}].target`;
      const reference = relation.target?.reference ?? '';
      const relative = reference.startsWith(`${baseUrl}/`) ? reference.slice(baseUrl.length + 1) : reference;
      const id = REPLACED.exec(relative)?.[1];
      if (!id) throw replacementError('not-found', where, `the replaced document '${reference}' is not a DocumentReference of this server`);
      let stored;
      try {
        stored = await store.read('DocumentReference', id);
      } catch (error) {
        if (error instanceof FhirError && (error.status === 404 || error.status === 410)) {
          throw replacementError('not-found', where, `the replaced document DocumentReference/${id} is not known${error.status === 410 ? ' (deleted)' : ''}`);
        }
        throw error;
      }
      const status = (stored.resource as { status?: string }).status;
      if (status !== 'current') throw replacementError('business-rule', where, `the replaced document DocumentReference/${id} is '${status}', not 'current': only a current document can be replaced`);
      if (!replacements.some((known) => known.id === id)) replacements.push({ entryIndex: entry.index, id, versionId: stored.versionId });
    }
  }
  return replacements;
}

/**
 * Once the transaction's entries have run, each replaced document still `current` becomes `superseded`:
 * a new version, written through the router (validation, hooks, audit) in the same transaction, on the
 * condition that it is still the version found before (If-Match), so that of two transactions replacing the
 * same document concurrently one fails. A document the transaction has already marked superseded itself
 * (PDSm4DMP sends that PATCH with the replacement) is left as it is.
 */
export async function supersedeReplaced(replacements: readonly Replacement[], store: ResourceStore, bundleRequest: FhirRequest, ctx: HandlerContext): Promise<void> {
  for (const replacement of replacements) {
    const where = `Bundle.entry[${replacement.entryIndex}].resource.relatesTo`;
    const stored = await store.read('DocumentReference', replacement.id);
    const document = stored.resource as Resource & { status?: string };
    if (document.status === 'superseded') continue;
    if (document.status !== 'current' || stored.versionId !== replacement.versionId) {
      throw replacementError('conflict', where, `the replaced document DocumentReference/${replacement.id} was changed by the transaction itself (now '${document.status}'), so it cannot be marked superseded`);
    }
    const response = await ctx.handle(
      {
        method: 'PUT',
        path: `DocumentReference/${replacement.id}`,
        query: {},
        body: { ...document, status: 'superseded' },
        ifMatch: `W/"${replacement.versionId}"`,
        prefer: 'return=minimal',
        baseUrl: bundleRequest.baseUrl,
      },
      store,
    );
    if (response.status >= 400) {
      const issues = ((response.body as { issue?: FhirError['outcome']['issue'] } | undefined)?.issue ?? []).map((issue) => ({
        ...issue,
        diagnostics: `${where}: marking DocumentReference/${replacement.id} superseded failed: ${issue.diagnostics ?? ''}`,
        expression: [where, ...(issue.expression ?? [])],
      }));
      throw new FhirError(response.status, issues.length > 0 ? issues : [{ code: 'processing', diagnostics: `${where}: marking DocumentReference/${replacement.id} superseded failed` }]);
    }
  }
}

function replacementError(code: 'not-found' | 'business-rule' | 'conflict', expression: string, diagnostics: string): FhirError {
  return new FhirError(code === 'conflict' ? 409 : 422, [{ code, expression: [expression], diagnostics: `${expression}: ${diagnostics}` }]);
}

import type { LightMyRequestResponse } from 'fastify';
import { FHIR_JSON, json, type TestServer } from './app.ts';
import type { ResourceJson } from './fixtures.ts';

/** The French national health identifier (INS, the NIR) system. */
export const INS = 'urn:oid:1.2.250.1.213.1.4.8';

/** A NIR with its two-digit control key (97 − NIR mod 97), as the INS carries it: `2840375123456` → 15 digits. */
export function nir(thirteenDigits: string): string {
  const key = 97n - (BigInt(thirteenDigits) % 97n);
  return `${thirteenDigits}${String(key).padStart(2, '0')}`;
}

export interface SearchAnswer {
  status: number;
  body: any;
  /** `Type/id` of the `match` entries, in the order returned. */
  matches: string[];
  /** `Type/id` of the `include` entries, sorted. */
  included: string[];
  /** The OperationOutcome of a `search.mode = outcome` entry, if any. */
  outcome?: any;
  link(relation: string): string | undefined;
}

/**
 * HTTP helpers for the search suites: resources are written by PUT with ids chosen by the test (so
 * assertions name them), searches are run with `inject` and their bundles taken apart.
 */
export function searchClient(server: TestServer) {
  const answer = (res: LightMyRequestResponse): SearchAnswer => {
    const body = res.body ? json(res) : undefined;
    const entries: any[] = body?.entry ?? [];
    const key = (e: any) => `${e.resource.resourceType}/${e.resource.id}`;
    return {
      status: res.statusCode,
      body,
      matches: entries.filter((e) => e.search?.mode === 'match').map(key),
      included: entries.filter((e) => e.search?.mode === 'include').map(key).sort(),
      outcome: entries.find((e) => e.search?.mode === 'outcome')?.resource,
      link: (relation: string) => body?.link?.find((l: any) => l.relation === relation)?.url,
    };
  };

  return {
    /** PUT `resource` at its own id (update-as-create); throws unless the server accepted it. */
    async put<T extends ResourceJson>(resource: T & { id: string }): Promise<any> {
      const res = await server.inject({
        method: 'PUT',
        url: `/fhir/${resource.resourceType}/${resource.id}`,
        payload: JSON.stringify(resource),
        headers: { 'content-type': FHIR_JSON },
      });
      if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
      return json(res);
    },

    async putAll(resources: Array<ResourceJson & { id: string }>): Promise<void> {
      for (const resource of resources) await this.put(resource);
    },

    async delete(reference: string): Promise<void> {
      const res = await server.inject({ method: 'DELETE', url: `/fhir/${reference}` });
      if (res.statusCode !== 204) throw new Error(`DELETE ${reference}: ${res.statusCode} ${res.body}`);
    },

    /** GET a search URL (relative `/fhir/…`, or an absolute link the server returned). */
    async get(url: string, headers: Record<string, string> = {}): Promise<SearchAnswer> {
      const path = url.replace(/^https?:\/\/[^/]+/, '');
      return answer(await server.inject({ method: 'GET', url: path, headers }));
    },

    async postForm(url: string, form: string, headers: Record<string, string> = {}): Promise<SearchAnswer> {
      return answer(await server.inject({ method: 'POST', url, payload: form, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } }));
    },

    /** The ids (without type) of the matches of a search that must succeed, sorted. */
    async ids(url: string, headers: Record<string, string> = {}): Promise<string[]> {
      const res = await this.get(url, headers);
      if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.matches.map((m) => m.split('/')[1]!).sort();
    },
  };
}

export type SearchClient = ReturnType<typeof searchClient>;

/** `q('birthdate', 'ge2021-01-01')` → `birthdate=ge2021-01-01` with the value percent-encoded. */
export const q = (name: string, value: string) => `${name}=${encodeURIComponent(value)}`;

/** An IdNatPS for a practitioner's RPPS number: `8` + the 10-digit RPPS stem + its Luhn check digit. */
export function idNatPsRpps(tenDigits: string): string {
  let sum = 0;
  [...tenDigits].reverse().forEach((c, i) => {
    const d = Number(c) * (i % 2 === 0 ? 2 : 1);
    sum += d > 9 ? d - 9 : d;
  });
  return `8${tenDigits}${(10 - (sum % 10)) % 10}`;
}

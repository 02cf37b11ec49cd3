/**
 * A seeded generator of mutated FHIR requests, shared by the suite's fuzz test and `npm run fuzz`.
 * Each request starts from something the server accepts (a valid resource, a search the CapabilityStatement
 * lists, a patch of a stored resource) and is bent in one or two ways a careless or hostile client would:
 * wrong JSON types, control characters, lone surrogates, invalid UTF-8, deep nesting, long values, edited
 * ids, cursors and headers. The server must answer each with a 2xx or a 4xx OperationOutcome, never a 5xx.
 */
import { readFileSync } from 'node:fs';
import { rng as seededRandom } from '../../scripts/bench/lib/french-population.ts';
import { minimalResource, type ResourceJson } from './fixtures.ts';

export interface FuzzRequest {
  kind: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  headers: Record<string, string>;
  /** A string, or bytes for payloads that are not valid UTF-8. */
  payload?: string | Buffer;
}

interface CapabilityResource {
  type: string;
  interaction: Array<{ code: string }>;
  searchParam?: Array<{ name: string; type: string }>;
}

const capability = JSON.parse(readFileSync(new URL('../../capability-statement.json', import.meta.url), 'utf8')) as {
  rest: Array<{ resource: CapabilityResource[]; searchParam?: Array<{ name: string; type: string }> }>;
};
const WRITABLE = capability.rest[0]!.resource.filter((r) => r.interaction.some((i) => i.code === 'create')).map((r) => r.type);
const SEARCHABLE = capability.rest[0]!.resource.filter((r) => r.interaction.some((i) => i.code === 'search-type'));
const SYSTEM_PARAMS = capability.rest[0]!.searchParam ?? [];

const FHIR_JSON = 'application/fhir+json';

/** Strings that have broken servers: control characters, surrogates, injection attempts, odd Unicode. */
const NASTY_STRINGS = [
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\u0007\u001b[31m',
  "' OR '1'='1",
  "'; DROP TABLE resource; --",
  '$1',
  '%00',
  '%',
  '%FF',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  '\\',
  '"',
  '{}',
  '|',
  '||',
  ',,,',
  '$',
  '*',
  '\u202e',
  '\ufeff',
  '🧬',
  'e\u0301',
  'ﬀ',
  ' ',
  '',
  '-0',
  '1e309',
  'NaN',
  '9999-99-99',
  '2024-02-30T25:61:61+99:99',
  'urn:uuid:',
  'Patient/',
  'Patient/../Patient/x',
];

const NASTY_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e-308, 2 ** 53 + 1, [], {}, [null], [[]], [{}], '', 'x', { value: null }];

export class FuzzGenerator {
  readonly random: () => number;
  /** Ids of resources the server has stored, by type, so that reads, updates and patches meet real data. */
  readonly known = new Map<string, string[]>();

  constructor(readonly seed: number) {
    this.random = seededRandom(seed);
  }

  remember(resourceType: string, id: string): void {
    const ids = this.known.get(resourceType) ?? [];
    if (ids.length < 50) ids.push(id);
    this.known.set(resourceType, ids);
  }

  next(): FuzzRequest {
    const kinds: Array<[number, () => FuzzRequest]> = [
      [20, () => this.create()],
      [10, () => this.update()],
      [12, () => this.bundle()],
      [22, () => this.search()],
      [10, () => this.read()],
      [10, () => this.patch()],
      [6, () => this.conditionalCreate()],
      [5, () => this.history()],
      [5, () => this.bytes()],
    ];
    const total = kinds.reduce((sum, [weight]) => sum + weight, 0);
    let roll = this.random() * total;
    for (const [weight, make] of kinds) {
      roll -= weight;
      if (roll < 0) return make();
    }
    return this.create();
  }

  private int(below: number): number {
    return Math.floor(this.random() * below);
  }

  private pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private type(): string {
    return this.pick(WRITABLE);
  }

  private knownId(resourceType: string): string {
    const ids = this.known.get(resourceType);
    return ids?.length && this.chance(0.8) ? this.pick(ids) : this.nastyId();
  }

  private nastyId(): string {
    return this.pick(['x', 'does-not-exist', 'a'.repeat(65), 'a'.repeat(5000), '..', '%FF', '%00', '%2F', "1'--", '-', '_history', '$validate', '🧬', 'A.b-c']);
  }

  private nastyString(): string {
    if (this.chance(0.15)) return this.longString();
    return this.pick(NASTY_STRINGS);
  }

  /** Incompressible text longer than a btree index row, or simply long. */
  private longString(): string {
    const length = this.pick([300, 2800, 3000, 9000, 70_000]);
    let text = '';
    while (text.length < length) text += this.random().toString(36).slice(2);
    return text.slice(0, length);
  }

  private nastyValue(): unknown {
    if (this.chance(0.5)) return this.nastyString();
    if (this.chance(0.1)) return this.deep(this.pick([50, 300, 1000, 3000]));
    return structuredClone(this.pick(NASTY_VALUES));
  }

  private deep(levels: number): unknown {
    let value: unknown = { url: 'http://example.org/x', valueString: 'bottom' };
    for (let i = 0; i < levels; i++) value = { url: 'http://example.org/x', extension: [value] };
    return value;
  }

  /** Bends a resource in one to three places: a value replaced, a key added or removed, an array blown up. */
  mutate(resource: ResourceJson): ResourceJson {
    const copy = structuredClone(resource) as Record<string, unknown>;
    const times = 1 + this.int(3);
    for (let i = 0; i < times; i++) this.mutateOnce(copy);
    return copy as ResourceJson;
  }

  private mutateOnce(root: Record<string, unknown>): void {
    const paths = collectPaths(root);
    const roll = this.random();
    if (roll < 0.1) {
      root[this.pick(['extension', 'contained', 'identifier', 'meta', 'text', 'id', 'resourceType', 'unknownElement', '_birthDate', 'modifierExtension'])] = this.nastyValue();
      return;
    }
    if (roll < 0.16) {
      const count = this.pick([1000, 20_000]);
      root.identifier = Array.from({ length: count }, (_, n) => ({ system: 'urn:oid:1.2.250.1.71.4.2.1', value: `V${n}` }));
      return;
    }
    if (roll < 0.2) {
      root.extension = [this.deep(this.pick([100, 1000]))];
      return;
    }
    const [parent, key] = this.pick(paths);
    if (roll < 0.3) {
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else delete (parent as Record<string, unknown>)[key];
    } else {
      (parent as Record<string, unknown>)[key] = this.nastyValue();
    }
  }

  private resource(resourceType = this.type()): ResourceJson {
    return minimalResource(resourceType);
  }

  private body(resource: unknown): string {
    try {
      return JSON.stringify(resource);
    } catch {
      // Nesting deeper than JSON.stringify's stack: the same shape written as text, as a client could send it.
      const levels = 5000;
      return `{"resourceType":"Patient","extension":[${'{"url":"http://example.org/x","extension":['.repeat(levels)}{"url":"http://example.org/x","valueString":"bottom"}${']}'.repeat(levels)}]}`;
    }
  }

  private json(method: FuzzRequest['method'], url: string, kind: string, payload: unknown, headers: Record<string, string> = {}): FuzzRequest {
    return { kind, method, url, headers: { 'content-type': FHIR_JSON, ...headers }, payload: this.body(payload) };
  }

  create(): FuzzRequest {
    const resourceType = this.type();
    const resource = this.chance(0.15) ? this.resource(resourceType) : this.mutate(this.resource(resourceType));
    return this.json('POST', `/fhir/${resourceType}`, 'create', resource);
  }

  update(): FuzzRequest {
    const resourceType = this.type();
    const id = this.knownId(resourceType);
    const resource = this.mutate({ ...this.resource(resourceType), id: this.chance(0.8) ? id : this.nastyId() });
    const headers: Record<string, string> = this.chance(0.3) ? { 'if-match': this.pick(['W/"1"', 'W/"999"', '"1"', 'garbage', 'W/"\u0000"', 'W/"-1"']) } : {};
    return this.json('PUT', `/fhir/${resourceType}/${encodeLoosely(id)}`, 'update', resource, headers);
  }

  bundle(): FuzzRequest {
    const entries = Array.from({ length: 1 + this.int(4) }, (_, n) => {
      const resourceType = this.type();
      const method = this.pick(['POST', 'PUT', 'GET', 'DELETE', 'PATCH', 'HEAD', 'post', '']);
      const fullUrl = `urn:uuid:00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
      const request: Record<string, unknown> = {
        method,
        url: method === 'PUT' || method === 'DELETE' || method === 'GET' ? `${resourceType}/${this.knownId(resourceType)}` : resourceType,
      };
      if (this.chance(0.2)) request.ifNoneExist = this.searchQuery(resourceType);
      const entry: Record<string, unknown> = { fullUrl, request, resource: this.chance(0.5) ? this.resource(resourceType) : this.mutate(this.resource(resourceType)) };
      if (this.chance(0.2)) (entry as Record<string, unknown>)[this.pick(['request', 'resource', 'fullUrl'])] = this.nastyValue();
      return entry;
    });
    const bundle: Record<string, unknown> = { resourceType: 'Bundle', type: this.pick(['transaction', 'batch', 'transaction', 'batch', 'collection', 'x']), entry: entries };
    if (this.chance(0.2)) this.mutateOnce(bundle);
    return this.json('POST', '/fhir', 'bundle', bundle);
  }

  private searchValue(type: string): string {
    if (this.chance(0.35)) return this.nastyString();
    switch (type) {
      case 'date':
        return this.pick(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap', 'xx', '']) + this.pick(['2024', '2024-05-02', '2024-05-02T10:00:00Z', '2024-13', '99999', '2024-05-02T10:00']);
      case 'number':
      case 'quantity':
        return this.pick(['gt', 'lt', 'ap', '']) + this.pick(['5', '5.4|http://unitsofmeasure.org|mg', '1e400', '-', '5||', '|||', '0.0000000000000000000001']);
      case 'token':
        return this.pick(['http://loinc.org|1234-5', '|x', 'x|', '|', 'urn:oid:1.2.250.1.213.1.4.8|1840562225', 'active']);
      case 'reference':
        return this.pick(['Patient/example', 'example', 'http://other.org/fhir/Patient/1', 'Patient/', '/']);
      default:
        return this.pick(['Martin', 'mart', 'Jeanne Martin', 'é', 'x']);
    }
  }

  private searchQuery(resourceType: string): string {
    const definition = SEARCHABLE.find((r) => r.type === resourceType);
    const params = [...(definition?.searchParam ?? []), ...SYSTEM_PARAMS];
    const parts: string[] = [];
    for (let i = 0, n = 1 + this.int(3); i < n; i++) {
      const param = params.length ? this.pick(params) : { name: '_id', type: 'token' };
      let name = param.name;
      if (this.chance(0.2)) name += this.pick([':exact', ':contains', ':missing', ':not', ':text', ':above', ':below', ':Patient', ':identifier', ':bogus', '.name', '.identifier', ':iterate']);
      if (this.chance(0.05)) name = this.pick(['_has:Immunization:patient:status', '_has', '_has:X:y:z', 'subject:Patient.name', 'patient.organization.name', `${name}.`]);
      const value = this.searchValue(param.type);
      parts.push(`${encodeLoosely(name)}=${this.chance(0.8) ? encodeLoosely(value) : value.replace(/[&#\s]/g, '')}`);
    }
    if (this.chance(0.4)) {
      const control = this.pick(['_count', '_sort', '_total', '_summary', '_elements', '_include', '_revinclude', '_cursor', '_format', '_pretty', '_contained', '_offset', '_bogus']);
      const value = this.pick(['-1', '0', '1', '99999999', 'abc', '_lastUpdated', '-birthdate', 'accurate', 'estimate', 'count', 'text', 'data', 'true', 'id,name', '*', 'Immunization:patient', 'Patient:x', 'eyJ4IjoxfQ', '%00', this.nastyString()]);
      parts.push(`${control}=${encodeLoosely(value)}`);
    }
    return parts.join('&');
  }

  search(): FuzzRequest {
    const roll = this.random();
    const resourceType = this.pick(SEARCHABLE).type;
    const query = this.searchQuery(resourceType);
    if (roll < 0.1) return { kind: 'search', method: 'GET', url: `/fhir?${query}`, headers: {} };
    if (roll < 0.2) {
      const patient = this.knownId('Patient');
      return { kind: 'search', method: 'GET', url: `/fhir/Patient/${encodeLoosely(patient)}/${this.pick(WRITABLE)}?${query}`, headers: {} };
    }
    if (roll < 0.3) return { kind: 'search', method: 'POST', url: `/fhir/${resourceType}/_search`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: query };
    return { kind: 'search', method: 'GET', url: `/fhir/${resourceType}?${query}`, headers: {} };
  }

  read(): FuzzRequest {
    const resourceType = this.type();
    const id = this.chance(0.7) ? this.knownId(resourceType) : this.nastyId();
    const encoded = this.chance(0.8) ? encodeLoosely(id) : id;
    const suffix = this.pick(['', '', '', '/_history', `/_history/${this.pick(['1', '2', '0', '-1', 'x', '99999999999999999999', '%FF'])}`, '/$validate', '/$everything', '/_history?_count=abc']);
    const headers: Record<string, string> = this.chance(0.3) ? { accept: this.pick(['application/fhir+xml', 'text/html', '*/*', 'application/fhir+json; fhirVersion=3.0', '\u0000']) } : {};
    return { kind: 'read', method: this.pick(['GET', 'GET', 'GET', 'DELETE']), url: `/fhir/${resourceType}/${encoded}${suffix}`, headers };
  }

  patch(): FuzzRequest {
    const resourceType = this.pick(WRITABLE.filter((type) => type !== 'Binary'));
    const id = this.knownId(resourceType);
    const operations: unknown[] = Array.from({ length: 1 + this.int(3) }, () => ({
      op: this.pick(['add', 'replace', 'remove', 'move', 'copy', 'test', 'bogus']),
      path: this.pick(['/name/0/family', '/id', '/resourceType', '/meta', '/gender', '/text', '/-', '', '/name/999', '/identifier/-', '~1', '/a/b/c']),
      value: this.chance(0.7) ? this.nastyValue() : 'valeur',
      from: this.pick(['/name/0', '/nothing', undefined]),
    }));
    const fhirPathPatch = {
      resourceType: 'Parameters',
      parameter: [
        {
          name: 'operation',
          part: [
            { name: 'type', valueCode: this.pick(['add', 'insert', 'delete', 'replace', 'move', 'x']) },
            { name: 'path', valueString: this.pick(['Patient', 'Patient.name', 'Patient.name.where(', '%resource', '(((', 'Patient.identifier.first()']) },
            { name: 'name', valueString: this.pick(['birthDate', 'gender', '']) },
            { name: 'value', valueString: this.nastyString() },
          ],
        },
      ],
    };
    const jsonPatch = this.chance(0.6);
    const headers: Record<string, string> = { 'content-type': jsonPatch ? 'application/json-patch+json' : FHIR_JSON };
    if (this.chance(0.2)) headers['if-match'] = this.pick(['W/"1"', 'W/"2"', 'bad']);
    return { kind: 'patch', method: 'PATCH', url: `/fhir/${resourceType}/${encodeLoosely(id)}`, headers, payload: this.body(jsonPatch ? (this.chance(0.1) ? this.nastyValue() : operations) : fhirPathPatch) };
  }

  conditionalCreate(): FuzzRequest {
    const resourceType = this.type();
    const criteria = this.searchQuery(resourceType);
    const header = this.chance(0.8) ? criteria : this.nastyString();
    return this.json('POST', `/fhir/${resourceType}`, 'conditional-create', this.resource(resourceType), { 'if-none-exist': header });
  }

  history(): FuzzRequest {
    const scope = this.pick(['/fhir/_history', `/fhir/${this.type()}/_history`]);
    const param = this.pick(['_since', '_at', '_count', '_cursor', '_list', '_sort']);
    const value = this.pick(['2024-01-01', 'yesterday', '-5', '0', '10', 'eyJzZXEiOjF9', 'AAAA', 'abc', '%FF', this.nastyString()]);
    return { kind: 'history', method: 'GET', url: `${scope}?${param}=${encodeLoosely(value)}`, headers: {} };
  }

  /** Bodies that are not clean UTF-8 JSON: truncated, a byte flipped, Latin-1, a BOM, another media type. */
  bytes(): FuzzRequest {
    const resourceType = this.type();
    const text = this.body(this.resource(resourceType));
    const roll = this.random();
    let payload: Buffer;
    if (roll < 0.25) payload = Buffer.from(text.slice(0, this.int(text.length)));
    else if (roll < 0.5) {
      payload = Buffer.from(text);
      payload[this.int(payload.length)] = this.int(256);
    } else if (roll < 0.75) payload = Buffer.concat([Buffer.from(text.slice(0, -2)), Buffer.from(',"x":"Caf'), Buffer.from([0xe9]), Buffer.from('"}')]);
    else payload = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    const contentType = this.pick([FHIR_JSON, FHIR_JSON, 'application/json', 'application/fhir+json; charset=latin1', 'text/plain', 'application/xml', '']);
    return { kind: 'bytes', method: this.pick(['POST', 'PUT']), url: `/fhir/${resourceType}${this.chance(0.5) ? '' : `/${this.knownId(resourceType)}`}`, headers: contentType ? { 'content-type': contentType } : {}, payload };
  }
}

/**
 * encodeURIComponent, except that a lone surrogate (which it refuses) goes out as the three bytes a
 * careless encoder writes for it (WTF-8), a percent-encoding that is not UTF-8: what such a client sends.
 */
function encodeLoosely(value: string): string {
  return value.replace(/[\ud800-\udfff]|[^\ud800-\udfff]+/g, (part) => {
    if (part.length === 1 && /[\ud800-\udfff]/.test(part)) {
      const code = part.charCodeAt(0);
      return [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    }
    return encodeURIComponent(part);
  });
}

/** Every [container, key] pair in a JSON tree (iteratively: a tree may already be nested thousands deep). */
function collectPaths(root: Record<string, unknown>): Array<[object, string]> {
  const found: Array<[object, string]> = [];
  const pending: unknown[] = [root];
  while (pending.length > 0 && found.length < 50_000) {
    const node = pending.pop();
    if (!node || typeof node !== 'object') continue;
    for (const [key, value] of Object.entries(node)) {
      found.push([node, key]);
      pending.push(value);
    }
  }
  return found.length ? found : [[root, 'resourceType']];
}

export interface FuzzAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** What is wrong with an answer, or undefined: a 5xx, or an error that is not an OperationOutcome. */
export function judge(answer: FuzzAnswer): string | undefined {
  if (answer.status >= 500) return `answered ${answer.status}`;
  if (answer.status >= 400) {
    if (!answer.contentType.startsWith(FHIR_JSON)) return `${answer.status} with content type '${answer.contentType}'`;
    try {
      const outcome = JSON.parse(answer.body) as { resourceType?: string; issue?: unknown[] };
      if (outcome.resourceType !== 'OperationOutcome' || !outcome.issue?.length) return `${answer.status} that is not an OperationOutcome`;
    } catch {
      return `${answer.status} whose body is not JSON`;
    }
  }
  return undefined;
}

/** A failing request, short enough to print: long payloads are cut. */
export function describe(request: FuzzRequest, problem: string): string {
  const payload = request.payload === undefined ? '' : typeof request.payload === 'string' ? request.payload : request.payload.toString('latin1');
  const shown = payload.length > 300 ? `${payload.slice(0, 300)}… (${payload.length} chars)` : payload;
  const url = request.url.length > 300 ? `${request.url.slice(0, 300)}…` : request.url;
  return `${problem}: ${request.kind} ${request.method} ${url} ${JSON.stringify(request.headers)} ${shown}`;
}

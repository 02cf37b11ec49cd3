/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): where the samples went, by area of the code (a sample
 * counts for every area on its stack, so shares overlap: "inclusive") and by function (self time).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** Samples that were not idle (the process had JavaScript or GC work). */
  busySamples: number;
  busyMs: number;
  wallMs: number;
  /** Share of busy samples whose stack includes the area, in %. */
  areas: Array<{ area: string; percent: number }>;
  /** Functions by self time, in % of busy samples. */
  topSelf: Array<{ fn: string; percent: number }>;
}

/** Tags a frame can give its stack; an area of the report is a tag or two tags together on one stack. */
const TAGS: Array<[string, (url: string, fn: string) => boolean]> = [
  ['validation', (url) => url.includes('/src/fhir/validation/')],
  ['fhirpath', (url) => url.includes('/node_modules/fhirpath/')],
  ['ajv', (url) => url.includes('/node_modules/ajv/')],
  ['search', (url) => url.includes('/src/search/')],
  ['bundle', (url) => url.includes('/src/router/bundle.ts')],
  ['repository', (url) => url.includes('/src/store/repository.ts')],
  ['pg', (url) => /\/node_modules\/pg[^/]*\//.test(url)],
  ['http', (url) => url.includes('/node_modules/fastify') || url.startsWith('node:_http') || url.startsWith('node:http')],
  ['pino', (url) => url.includes('/node_modules/pino')],
  ['writev', (url, fn) => url === '' && fn === 'writev'],
  ['json', (url, fn) => url === '' && (fn === 'parse' || fn === 'stringify')],
  ['gc', (_url, fn) => fn === '(garbage collector)'],
];
const AREAS: Array<[string, string[]]> = [
  ['profile validation (src/fhir/validation)', ['validation']],
  ['  of which FHIRPath (fhirpath.js) under validation', ['validation', 'fhirpath']],
  ['  of which JSON schema (ajv) under validation', ['validation', 'ajv']],
  ['search index extraction (src/search)', ['search']],
  ['  of which FHIRPath (fhirpath.js) under extraction', ['search', 'fhirpath']],
  ['FHIRPath anywhere (fhirpath.js)', ['fhirpath']],
  ['bundle processing (src/router/bundle.ts, synchronous part)', ['bundle']],
  ['repository (src/store/repository.ts, synchronous part)', ['repository']],
  ['pg driver (node_modules/pg*)', ['pg']],
  ['socket writes (writev, self)', ['writev']],
  ['fastify + node:http', ['http']],
  ['pino logging', ['pino']],
  ['JSON.parse / JSON.stringify (self)', ['json']],
  ['garbage collection', ['gc']],
];

const shortUrl = (url: string) => url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/');

/**
 * `window`: only samples taken between these two instants, in microseconds of the system's monotonic clock
 * (`process.hrtime.bigint() / 1000n` in any process on the machine: V8 stamps samples with the same clock).
 */
export function summariseProfile(file: string, options: { top?: number; window?: { fromUs: number; toUs: number } } = {}): ProfileSummary {
  const top = options.top ?? 20;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  // Areas hit by each node's stack, computed once per node.
  const areasOf = new Map<number, Set<string>>();
  const stackAreas = (id: number): Set<string> => {
    const known = areasOf.get(id);
    if (known) return known;
    const node = byId.get(id)!;
    const up = parent.get(id);
    const set = new Set(up === undefined ? [] : stackAreas(up));
    for (const [tag, test] of TAGS) if (test(node.callFrame.url, node.callFrame.functionName)) set.add(tag);
    areasOf.set(id, set);
    return set;
  };
  const areaSamples = new Map<string, number>();
  const selfSamples = new Map<string, number>();
  let busy = 0;
  let busyUs = 0;
  let at = profile.startTime;
  let wallUs = 0;
  profile.samples.forEach((id, i) => {
    at += profile.timeDeltas[i] ?? 0;
    if (options.window && (at < options.window.fromUs || at > options.window.toUs)) return;
    wallUs += profile.timeDeltas[i] ?? 0;
    const node = byId.get(id)!;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)' || fn === '(program)') return;
    busy++;
    busyUs += profile.timeDeltas[i] ?? 0;
    const tags = stackAreas(id);
    for (const [area, needs] of AREAS) if (needs.every((tag) => tags.has(tag))) areaSamples.set(area, (areaSamples.get(area) ?? 0) + 1);
    const key = `${fn || '(anonymous)'} ${shortUrl(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;
    selfSamples.set(key, (selfSamples.get(key) ?? 0) + 1);
  });
  const percent = (n: number) => (100 * n) / Math.max(1, busy);
  return {
    file,
    busySamples: busy,
    busyMs: busyUs / 1000,
    wallMs: wallUs / 1000,
    areas: AREAS.map(([area]) => ({ area, percent: percent(areaSamples.get(area) ?? 0) })),
    topSelf: [...selfSamples.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, n]) => ({ fn, percent: percent(n) })),
  };
}

/** The summary of a profile as the CPU scripts print it: busy time, areas of 0.5 % or more, then functions by self time. */
export function printProfileSummary(file: string, top: number): void {
  const summary = summariseProfile(file, { top });
  console.log(`  profile: ${summary.busyMs.toFixed(0)} ms busy of ${summary.wallMs.toFixed(0)} ms`);
  for (const { area, percent } of summary.areas) if (percent >= 0.5) console.log(`    ${percent.toFixed(1).padStart(5)}%  ${area}`);
  console.log('  by function (self):');
  for (const { fn, percent } of summary.topSelf) console.log(`    ${percent.toFixed(1).padStart(5)}%  ${fn}`);
}

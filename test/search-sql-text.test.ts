// The SQL text of a search depends on the search's shape alone: compiled twice it is the same text, and
// two searches differing only in their values give the same text with other parameters. That is what
// lets PostgreSQL reuse one prepared statement and pg_stat_statements group one search's calls.
import t from 'tap';
import { hasIndexRowsStatement, hasSourcesStatement, buildSearchSql, type SearchSql } from '../src/search/sql.ts';
import { parseSearch } from '../src/search/parse.ts';
import type { Filter, SearchRequest } from '../src/search/types.ts';
import { registry } from './helpers/search.ts';

const parse = (types: string[], query: string): SearchRequest =>
  parseSearch(types, [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: 'http://x/fhir' });

const texts = (sql: SearchSql) => ({ segments: sql.segments.map((s) => s.sql), matchSql: sql.matchSql, countSql: sql.countSql });
const params = (sql: SearchSql) => [...sql.segments.map((s) => s.params), sql.countParams];

// Each pair: one shape of search, with two sets of values. Between them they use every alias the compiler
// makes: index subqueries, chains, `_has` (record patient and plain), a list of ids checked apart, the
// patient compartment, sort keys read by correlated subqueries, and a sort walking an index.
const pairs: Array<{ name: string; types: string[]; queries: [string, string]; compartment?: [string, string] }> = [
  { name: 'family and birthdate', types: ['Patient'], queries: ['family=Martin&birthdate=1980-05-01', 'family=Durand&birthdate=1975-02-11'] },
  { name: 'chain and a date range, sorted by date', types: ['Immunization'], queries: ['patient.identifier=urn:sys|1&date=ge2019-01-01&date=lt2023-01-01&_sort=-date', 'patient.identifier=urn:sys|2&date=ge2017-03-01&date=lt2018-01-01&_sort=-date'] },
  { name: '_has to the record patient', types: ['Patient'], queries: ['_has:Immunization:patient:vaccine-code=urn:atc|J07BL01&birthdate=ge1990', '_has:Immunization:patient:vaccine-code=urn:atc|J07BG01&birthdate=ge1950'] },
  { name: '_has with a chain inside', types: ['Patient'], queries: ['_has:Immunization:patient:performer.identifier=urn:rpps|1', '_has:Immunization:patient:performer.identifier=urn:rpps|2'] },
  { name: 'ids with other filters', types: ['Patient'], queries: ['_id=a,b&birthdate=ge1990&gender=female', '_id=c,d&birthdate=ge2001&gender=male'] },
  { name: 'sort on a string parameter', types: ['Immunization'], queries: ['status=completed&_sort=lot-number,-date', 'status=not-done&_sort=lot-number,-date'] },
  { name: 'patient compartment', types: ['Immunization'], queries: ['vaccine-code=urn:atc|A', 'vaccine-code=urn:atc|B'], compartment: ['p1', 'p2'] },
  { name: 'system search', types: ['Immunization', 'AllergyIntolerance'], queries: ['_lastUpdated=ge2024-01-01&_sort=_lastUpdated', '_lastUpdated=ge2025-06-01&_sort=_lastUpdated'] },
];

function build(types: string[], query: string, compartmentOf?: string): SearchSql {
  const request = parse(types, query);
  if (compartmentOf) request.filters.push({ kind: 'compartment', compartmentType: 'Patient', id: compartmentOf });
  return buildSearchSql(request);
}

for (const { name, types, queries, compartment } of pairs) {
  t.test(name, async (t) => {
    const [a, b] = queries;
    const first = build(types, a, compartment?.[0]);
    t.strictSame(texts(build(types, a, compartment?.[0])), texts(first), 'compiled twice: the same text');
    const other = build(types, b, compartment?.[1]);
    t.strictSame(texts(other), texts(first), 'other values: the same text');
    t.notSame(params(other), params(first), 'the values travel as parameters');
    // Aliases are numbered within each statement: the first of each statement is number 1.
    for (const sql of [...first.segments.map((s) => s.sql), first.matchSql]) {
      const numbers = [...sql.matchAll(/\b[a-z](\d+)\./g)].map((m) => Number(m[1]));
      if (numbers.length > 0) t.equal(Math.min(...numbers), 1, 'aliases start at 1 in each statement');
    }
  });
}

t.test('the statements a _has is read first by', async (t) => {
  const hasOf = (query: string) => parse(['Patient'], query).filters.find((f): f is Extract<Filter, { kind: 'has' }> => f.kind === 'has')!;
  const a = hasOf('_has:Immunization:patient:vaccine-code=urn:atc|J07BL01');
  const b = hasOf('_has:Immunization:patient:vaccine-code=urn:atc|J07AP03');
  t.equal(hasSourcesStatement(a, ['Patient'], 5000).sql, hasSourcesStatement(a, ['Patient'], 5000).sql);
  t.equal(hasSourcesStatement(b, ['Patient'], 100).sql, hasSourcesStatement(a, ['Patient'], 5000).sql);
  t.equal(hasIndexRowsStatement(b, 100)!.sql, hasIndexRowsStatement(a, 30000)!.sql);
});

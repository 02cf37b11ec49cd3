import { loadSearchParameters, SearchParameterRegistry } from '../../src/search/registry.ts';

/** The registry the server builds, for tests that compare declarations with it. */
export const registry = new SearchParameterRegistry(loadSearchParameters());

/**
 * The benchmarks' encryption keys: a fixed master key (the data are generated, nothing here is secret), so that a
 * kept schema (BENCH_SCHEMA) opens again on the next run, and every process of a run (the server, the loader's
 * writers) loads the same search index key from it.
 */
import { DataKeys, LocalKeyWrapper } from '../../../src/store/encryption.ts';

const BENCH_MASTER_KEY = Buffer.alloc(32, 0x5e);

export function benchDataKeys(): DataKeys {
  return new DataKeys(new LocalKeyWrapper(BENCH_MASTER_KEY));
}

/** What one batch of operations took: each operation's latency (ms, in index order) and the batch's wall time. */
export interface LoopResult {
  latencies: number[];
  elapsedMs: number;
}

/**
 * Runs `count` operations with exactly `concurrency` of them in flight: each lane starts the next operation
 * as soon as its previous one ends (a closed loop), so throughput is what the system under test sustains.
 */
export async function closedLoop(count: number, concurrency: number, operation: (index: number) => Promise<void>): Promise<LoopResult> {
  const latencies = new Array<number>(count).fill(0);
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const index = next++;
      const started = performance.now();
      await operation(index);
      latencies[index] = performance.now() - started;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { latencies, elapsedMs: performance.now() - started };
}

import type { SqlExecutor } from './database.ts';
import { insertNew, type NewResource } from './repository.ts';

interface Waiting {
  created: NewResource;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Group commit for plain creates from concurrent requests. At most `maxInFlight` insert statements are
 * out at once; creates arriving meanwhile wait, and go out together as one multi-row statement (one
 * round trip, one commit) as soon as a statement returns. At low load every create goes alone at once:
 * there is no timer, so nothing waits that would not have waited for a connection anyway.
 *
 * Each create is still answered only once its own row is committed. A batch that fails is retried one
 * create at a time, so a failure (a duplicate id, say) is only its own creator's.
 */
export class CreateCoalescer {
  private queue: Waiting[] = [];
  private inFlight = 0;

  constructor(
    private readonly db: SqlExecutor,
    private readonly maxInFlight = 4,
    private readonly maxBatch = 200,
  ) {}

  write(created: NewResource): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ created, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async send(batch: Waiting[]): Promise<void> {
    try {
      await insertNew(this.db, batch.map((waiting) => waiting.created));
      for (const waiting of batch) waiting.resolve();
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // One statement is atomic: nothing of the batch was written. Each create now goes on its own.
      await Promise.all(batch.map((waiting) => insertNew(this.db, [waiting.created]).then(waiting.resolve, waiting.reject)));
    }
  }
}

import { fork, type ChildProcess } from 'node:child_process';
import type { LoopResult } from './closed-loop.ts';

/** A batch of requests for the load generator: `paths[i]` is sent with `bodies[i]` when there are bodies. */
export interface HttpJob {
  origin: string;
  method: 'GET' | 'POST';
  paths: string[];
  bodies?: string[];
  concurrency: number;
  /** `Bearer <token>`, sent with every request (the server's tokens come from its embedded issuer). */
  authorization?: string;
}

export interface HttpJobResult extends LoopResult {
  /** How many responses had each status code. */
  statuses: Record<number, number>;
  /** The Location header of each response ('' when absent), in request order. */
  locations: string[];
  /** CPU time the load generator itself spent on the job: near elapsedMs means the client was the bottleneck. */
  cpuMs: number;
}

/** Drives the HTTP load generator child process (http-load.ts), one job at a time. */
export class LoadClient {
  private constructor(private readonly child: ChildProcess) {}

  static start(): LoadClient {
    const child = fork(new URL('./http-load.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
    return new LoadClient(child);
  }

  run(job: HttpJob): Promise<HttpJobResult> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the load generator exited (${code}) during a job`));
      this.child.once('exit', onExit);
      this.child.once('message', (message: HttpJobResult | { error: string }) => {
        this.child.off('exit', onExit);
        if ('error' in message) reject(new Error(`load generator: ${message.error}`));
        else resolve(message);
      });
      this.child.send(job);
    });
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }
}

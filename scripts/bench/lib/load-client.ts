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

/** An operation a bench sends to a target's server: `count` requests, their paths and bodies drawn from the target. */
export interface HttpOperation<Target> {
  method: 'GET' | 'POST';
  concurrency: number;
  paths(target: Target, count: number): string[];
  bodies?(target: Target, count: number): string[];
}

/** The job sending `count` requests of `operation` to `target`'s server, with its bearer token if it has one. */
export function httpJob<Target extends { origin: string; authorization?: string }>(target: Target, operation: HttpOperation<Target>, count: number): HttpJob {
  return {
    origin: target.origin,
    authorization: target.authorization,
    method: operation.method,
    paths: operation.paths(target, count),
    ...(operation.bodies ? { bodies: operation.bodies(target, count) } : {}),
    concurrency: operation.concurrency,
  };
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

import { OperationRegistry } from './registry.ts';

/** The operations this server offers; each is declared in capability-statement.json (a test checks). */
export function defaultOperations(): OperationRegistry {
  return new OperationRegistry();
}

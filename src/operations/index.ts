import { eraseOperation } from './erase.ts';
import { everythingOperation } from './everything.ts';
import { OperationRegistry } from './registry.ts';
import { expandOperation, lookupOperation, validateCodeOperation } from './terminology.ts';
import { summaryOperation } from './summary.ts';
import { validateOperation } from './validate.ts';

/** The operations this server offers; each is declared in capability-statement.json (a test checks). */
export function defaultOperations(): OperationRegistry {
  return new OperationRegistry()
    .register(validateOperation)
    .register(expandOperation)
    .register(validateCodeOperation)
    .register(lookupOperation)
    .register(everythingOperation)
    .register(summaryOperation)
    .register(eraseOperation);
}

import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Issue } from '../outcome.ts';
import type { BundleProfileCheck, CheckOptions, ResourceValidator, ValidationResult } from './validator.ts';

/** What `warmUp` runs, one step per event-loop turn; every step is safe to skip or to repeat. */
export interface WarmUpSteps {
  /** Fill the caches the build reads (definitions, terminology), before it. */
  prepare?: Array<() => void>;
  /** Exercise the built validator (compiling what its first checks would compile). */
  exercise?: Array<(validator: ResourceValidator) => void>;
}

/**
 * A validator built when first needed, or ahead of that by `warmUp`: building the profile validator takes
 * seconds (definitions, terminology, compiled profiles, the R4 schema), which a server need not spend before
 * its first answer. A check arriving first builds it on the spot, so no write is ever checked by less.
 */
export class DeferredValidator implements ResourceValidator {
  private built: ResourceValidator | undefined;

  constructor(
    private readonly build: () => ResourceValidator,
    private readonly steps: WarmUpSteps = {},
  ) {}

  private get validator(): ResourceValidator {
    return (this.built ??= this.build());
  }

  validate(resourceType: string, resource: unknown): Issue[] {
    return this.validator.validate(resourceType, resource);
  }

  check(resourceType: string, resource: unknown, options?: CheckOptions): ValidationResult {
    const validator = this.validator;
    return validator.check?.(resourceType, resource, options) ?? { issues: validator.validate(resourceType, resource) };
  }

  checkBundleProfiles(bundle: unknown): BundleProfileCheck {
    const validator = this.validator;
    return validator.checkBundleProfiles?.(bundle) ?? { issues: [], entryProfiles: [] };
  }

  /** Builds and exercises it one step per event-loop turn, so requests arriving meanwhile are answered between steps. */
  async warmUp(): Promise<void> {
    for (const step of this.steps.prepare ?? []) {
      await nextTurn();
      if (!this.built) step();
    }
    await nextTurn();
    const validator = this.validator;
    for (const step of this.steps.exercise ?? []) {
      await nextTurn();
      step(validator);
    }
  }
}

import { Value } from '@sinclair/typebox/value'
import type { TSchema, Static } from '@sinclair/typebox'

/**
 * Config checking both services use: a schema check with defaults that reports every problem, and the error a
 * service's loader throws with them. Each service's own schema and cross-field rules stay in that service
 * (gateway/src/config/load.ts, cloud-relay/src/config/load.ts).
 */

export class ConfigError extends Error {
  constructor(readonly problems: string[], source: string) {
    super(`${source}: the configuration has ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`)
    this.name = 'ConfigError'
  }
}

/** Validates a value against a schema with defaults applied; returns every problem, not just the first. */
export function checkWithDefaults<S extends TSchema>(schema: S, input: unknown, prefix = ''): { value: Static<S>; problems: string[] } {
  const value = Value.Default(schema, Value.Clone(input)) as Static<S>
  // TypeBox reports a missing property twice ("required", then "Expected string"): keep the first per path.
  const byPath = new Map<string, string>()
  for (const e of Value.Errors(schema, value)) if (!byPath.has(e.path)) byPath.set(e.path, `${prefix}${e.path || '/'}: ${e.message}`)
  return { value, problems: [...byPath.values()] }
}

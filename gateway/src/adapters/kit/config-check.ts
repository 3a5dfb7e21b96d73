import type { Static, TSchema } from '@sinclair/typebox'
import { checkConnectorConfig, type CheckedConfig } from '../../config/load.js'

export type ParsedConnectorConfig<Config> = { ok: true; config: Config } | { ok: false; errors: string[] }

/** The same check as a result value, for tests and tools that build one connector config on its own. */
export function parseConnectorConfig<S extends TSchema>(definition: CheckedConfig<S>, input: unknown): ParsedConnectorConfig<Static<S>> {
  const { value, problems } = checkConnectorConfig(definition, input)
  return problems.length === 0 ? { ok: true, config: value } : { ok: false, errors: problems }
}

/** One problem (worded by `problem`) per list entry whose key an earlier entry already has. */
export function duplicateEntries<T>(list: readonly T[], key: (entry: T) => string, problem: (index: number, key: string, firstIndex: number) => string): string[] {
  const first = new Map<string, number>()
  const problems: string[] = []
  list.forEach((entry, index) => {
    const value = key(entry)
    const earlier = first.get(value)
    if (earlier === undefined) first.set(value, index)
    else problems.push(problem(index, value, earlier))
  })
  return problems
}

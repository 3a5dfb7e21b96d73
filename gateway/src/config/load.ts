import { readFile } from 'node:fs/promises'
import type { TSchema, Static } from '@sinclair/typebox'
import { GatewayConfigSchema, type GatewayConfig } from './schema.js'
import type { AdapterDefinition } from '../adapters/types.js'
import { checkWithDefaults, ConfigError } from '#kernel/config-check.js'
import { resolveSecret, resolveSecrets, withoutReported, type Env } from '#kernel/secrets.js'

export { ConfigError }

/** A connector field holding a PBX credential (the same rule the setup page uses to seal and hide fields). */
export const CONNECTOR_SECRET_FIELD = /password|secret/i

/** The gatewayId of a config that leaves it out: the box takes its id from enrollment. */
export const UNENROLLED_GATEWAY_ID = 'unenrolled'

export interface LoadedGatewayConfig extends GatewayConfig {
  /** Connector configs validated against their adapter's schema, defaults applied. */
  connectors: Array<{ id: string; type: string } & Record<string, unknown>>
}

/** What a connector check needs of an adapter definition: its schema and its cross-field rules. */
export interface CheckedConfig<S extends TSchema> {
  readonly configSchema: S
  check(config: Static<S>): string[]
}

/**
 * A connector config checked the one way boot and the setup page both use: defaults, the schema, then (once the
 * shape is right, so the rules can trust their types) the adapter's own rules. Every problem, prefixed.
 */
export function checkConnectorConfig<S extends TSchema>(definition: CheckedConfig<S>, input: unknown, prefix = ''): { value: Static<S>; problems: string[] } {
  const { value, problems } = checkWithDefaults(definition.configSchema, input, prefix)
  if (problems.length > 0) return { value, problems }
  return { value, problems: definition.check(value).map((problem) => `${prefix}${problem}`) }
}

/**
 * Checks a box config and its connectors. Secrets (relay.password, a connector's password/secret fields) may name
 * an environment variable ({"env": NAME}, read from `env`) or a file ({"file": PATH}, mode 0600).
 */
export function parseGatewayConfig(input: unknown, registry: ReadonlyMap<string, AdapterDefinition>, source = 'config', env: Env = process.env): Readonly<LoadedGatewayConfig> {
  const secrets = resolveSecrets(GatewayConfigSchema, input, env)
  const checked = checkWithDefaults(GatewayConfigSchema, secrets.input)
  const value = checked.value
  const problems = [...secrets.problems, ...withoutReported(checked.problems, secrets.reported)]
  const seen = new Set<string>()
  const connectors: LoadedGatewayConfig['connectors'] = []
  // Connectors are checked even when the rest has problems: the installer gets every error in one go.
  const listed: unknown[] = Array.isArray(value.connectors) ? value.connectors : []
  listed.forEach((item, index) => {
    if (typeof item !== 'object' || item === null) return
    const connector = item as { id?: unknown; type?: unknown }
    if (typeof connector.id !== 'string' || typeof connector.type !== 'string') return
    const prefix = `/connectors/${index} (${connector.id})`
    if (seen.has(connector.id)) problems.push(`${prefix}: duplicate connector id`)
    seen.add(connector.id)
    const definition = registry.get(connector.type)
    if (!definition) {
      problems.push(`${prefix}/type: unknown PBX type "${connector.type}"; valid types: ${[...registry.keys()].join(', ')}`)
      return
    }
    const resolved: Record<string, unknown> = { ...connector }
    const reported = new Set<string>()
    for (const [key, field] of Object.entries(resolved)) {
      if (!CONNECTOR_SECRET_FIELD.test(key)) continue
      const secret = resolveSecret(`${prefix}/${key}`, field, env)
      if (secret.problem !== undefined) {
        problems.push(secret.problem)
        reported.add(`${prefix}/${key}`)
      } else {
        resolved[key] = secret.value
      }
    }
    const checked = checkConnectorConfig(definition, resolved, prefix)
    problems.push(...withoutReported(checked.problems, reported))
    connectors.push(checked.value as LoadedGatewayConfig['connectors'][number])
  })
  if (problems.length) throw new ConfigError(problems, source)
  return Object.freeze({ ...value, connectors })
}

export async function loadGatewayConfig(file: string, registry: ReadonlyMap<string, AdapterDefinition>): Promise<Readonly<LoadedGatewayConfig>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError([`cannot read the file: ${(err as Error).message}`], file)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new ConfigError([`not valid JSON: ${(err as Error).message}`], file)
  }
  return parseGatewayConfig(json, registry, file)
}

import { readFile } from 'node:fs/promises'
import { checkWithDefaults, ConfigError } from '../../../gateway/src/config/load.js'
import { RelayConfigSchema, type RelayConfig } from './schema.js'

export { ConfigError }

export function parseRelayConfig(input: unknown, source = 'config'): Readonly<RelayConfig> {
  const { value, problems } = checkWithDefaults(RelayConfigSchema, input)
  if (value.broker?.mode === 'external' && !value.broker.url) problems.push('/broker/url: required when broker.mode is "external"')
  const gatewayIds = new Set<string>()
  for (const tenant of value.tenants ?? []) {
    for (const gateway of tenant.gateways) {
      if (gatewayIds.has(gateway.id)) problems.push(`/tenants/${tenant.id}/gateways: gateway id "${gateway.id}" is used twice`)
      gatewayIds.add(gateway.id)
    }
  }
  if (problems.length) throw new ConfigError(problems, source)
  return Object.freeze(value)
}

export async function loadRelayConfig(file: string): Promise<Readonly<RelayConfig>> {
  let json: unknown
  try {
    json = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    throw new ConfigError([`cannot read the file as JSON: ${(err as Error).message}`], file)
  }
  return parseRelayConfig(json, file)
}

import { readFile } from 'node:fs/promises'
import { checkWithDefaults, ConfigError } from '#kernel/config-check.js'
import { resolveSecrets, withoutReported } from '#kernel/secrets.js'
import { RelayConfigSchema, type RelayConfig } from './schema.js'

export { ConfigError }

/**
 * Checks a relay config and applies its defaults. Secret fields may name an environment variable ({"env": NAME},
 * read from `env`) or a file ({"file": PATH}, mode 0600); placeholders and short secrets are refused with the rest.
 */
export function parseRelayConfig(input: unknown, source = 'config', env: Readonly<Record<string, string | undefined>> = process.env): Readonly<RelayConfig> {
  const secrets = resolveSecrets(RelayConfigSchema, input, env)
  const checked = checkWithDefaults(RelayConfigSchema, secrets.input)
  const value = checked.value
  const problems = [...secrets.problems, ...withoutReported(checked.problems, secrets.reported)]
  if (value.broker?.mode === 'external' && !value.broker.url) problems.push('/broker/url: required when broker.mode is "external"')
  const publicUrl = value.graph?.notifications?.publicUrl
  if (publicUrl !== undefined && !/^https:\/\/[^/]+/i.test(publicUrl)) {
    problems.push(`/graph/notifications/publicUrl: must be an https URL (Graph delivers notifications over https only), got ${publicUrl}`)
  }
  const gatewayIds = new Set<string>()
  for (const tenant of value.tenants ?? []) {
    const graph = tenant.graph
    if (graph) {
      const where = `/tenants/${tenant.id}/graph`
      const certificate = graph.certificateFile !== undefined || graph.privateKeyFile !== undefined
      if (graph.clientSecret !== undefined && certificate) {
        problems.push(`${where}: give either clientSecret or certificateFile + privateKeyFile, not both`)
      } else if (graph.clientSecret === undefined && !certificate) {
        problems.push(`${where}: a credential is required: clientSecret, or certificateFile + privateKeyFile`)
      } else if (certificate && (graph.certificateFile === undefined || graph.privateKeyFile === undefined)) {
        problems.push(`${where}: certificateFile and privateKeyFile go together (got only ${graph.certificateFile === undefined ? 'privateKeyFile' : 'certificateFile'})`)
      }
    }
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

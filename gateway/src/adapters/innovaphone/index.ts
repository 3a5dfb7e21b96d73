import type { AdapterDefinition, AdapterDeps, PbxAdapter } from '../types.js'
import { InnovaphoneAdapter } from './adapter.js'
import { checkInnovaphoneConfig, InnovaphoneConfigSchema, type InnovaphoneConfig } from './config.js'

/** The registry entry for innovaphone PBXs over the App Platform WebSocket. */
export const innovaphoneAdapterDefinition = {
  type: 'innovaphone',
  configSchema: InnovaphoneConfigSchema,
  check: checkInnovaphoneConfig,
  create(config: InnovaphoneConfig, deps: AdapterDeps): PbxAdapter {
    return new InnovaphoneAdapter(config, deps)
  },
} as const satisfies AdapterDefinition<InnovaphoneConfig>

export { InnovaphoneAdapter } from './adapter.js'
export { checkInnovaphoneConfig, InnovaphoneConfigSchema, parseInnovaphoneConfig, innovaphoneUrl, type InnovaphoneConfig } from './config.js'

import type { AdapterDefinition, AdapterDeps, PbxAdapter } from '../types.js'
import { OsbizAdapter } from './adapter.js'
import { OsbizConfigSchema, type OsbizConfig } from './config.js'

/** The registry entry for Unify/Mitel OpenScape Business over CSTA. */
export const osbizAdapterDefinition = {
  type: 'osbiz',
  configSchema: OsbizConfigSchema,
  create(config: OsbizConfig, deps: AdapterDeps): PbxAdapter {
    return new OsbizAdapter(config, deps)
  },
} as const satisfies AdapterDefinition<OsbizConfig>

export { OsbizAdapter } from './adapter.js'
export { OsbizConfigSchema, parseOsbizConfig, type OsbizConfig, type OsbizUser } from './config.js'

import type { AdapterDefinition, AdapterDeps, PbxAdapter } from '../types.js'
import { OsbizAdapter } from './adapter.js'
import { checkOsbizConfig, OsbizConfigSchema, type OsbizConfig } from './config.js'

/** The registry entry for Unify/Mitel OpenScape Business over CSTA. */
export const osbizAdapterDefinition = {
  type: 'osbiz',
  configSchema: OsbizConfigSchema,
  check: checkOsbizConfig,
  create(config: OsbizConfig, deps: AdapterDeps): PbxAdapter {
    return new OsbizAdapter(config, deps)
  },
} as const satisfies AdapterDefinition<OsbizConfig>

export { OsbizAdapter } from './adapter.js'
export { checkOsbizConfig, OsbizConfigSchema, parseOsbizConfig, type OsbizConfig, type OsbizUser } from './config.js'

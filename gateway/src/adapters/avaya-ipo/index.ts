import type { AdapterDefinition, AdapterDeps, PbxAdapter } from '../types.js'
import { AvayaIpoAdapter } from './adapter.js'
import { checkAvayaIpoConfig, AvayaIpoConfigSchema, type AvayaIpoConfig } from './config.js'

/** The registry entry for Avaya IP Office over MTCTI-3. */
export const avayaIpoAdapterDefinition = {
  type: 'avaya-ipo',
  configSchema: AvayaIpoConfigSchema,
  check: checkAvayaIpoConfig,
  create(config: AvayaIpoConfig, deps: AdapterDeps): PbxAdapter {
    return new AvayaIpoAdapter(config, deps)
  },
} as const satisfies AdapterDefinition<AvayaIpoConfig>

export { AvayaIpoAdapter } from './adapter.js'
export { checkAvayaIpoConfig, AvayaIpoConfigSchema, parseAvayaIpoConfig, type AvayaIpoConfig } from './config.js'

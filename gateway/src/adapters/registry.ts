import type { AdapterDefinition } from './types.js'
import { osbizAdapterDefinition } from './osbiz/index.js'
import { avayaIpoAdapterDefinition } from './avaya-ipo/index.js'
import { innovaphoneAdapterDefinition } from './innovaphone/index.js'

/**
 * The static registry of PBX adapters: connector `type` → definition. No runtime plugin loading; an unknown
 * type fails config validation listing these names.
 */
export const adapterRegistry: ReadonlyMap<string, AdapterDefinition> = new Map<string, AdapterDefinition>([
  // Safe widening: config validation runs each connector through its own definition's schema before create().
  [osbizAdapterDefinition.type, osbizAdapterDefinition as unknown as AdapterDefinition],
  [avayaIpoAdapterDefinition.type, avayaIpoAdapterDefinition as unknown as AdapterDefinition],
  [innovaphoneAdapterDefinition.type, innovaphoneAdapterDefinition as unknown as AdapterDefinition],
])

import type { AdapterDefinition } from './types.js'
import { lazyAdapterDefinition } from './lazy-adapter.js'
import { checkOsbizConfig, OsbizConfigSchema } from './osbiz/config.js'
import { AvayaIpoConfigSchema, checkAvayaIpoConfig } from './avaya-ipo/config.js'
import { checkInnovaphoneConfig, InnovaphoneConfigSchema } from './innovaphone/config.js'

/**
 * The static registry of PBX adapters: connector `type` → definition. No runtime plugin loading; an unknown
 * type fails config validation listing these names. Each adapter's code is imported when a connector of its
 * type first runs (the bundle keeps it in its own chunk), its config schema at once.
 */
export const adapterRegistry: ReadonlyMap<string, AdapterDefinition> = new Map<string, AdapterDefinition>([
  // Safe widening: config validation runs each connector through its own definition's schema before create().
  ['osbiz', lazyAdapterDefinition('osbiz', OsbizConfigSchema, checkOsbizConfig, async () => (await import('./osbiz/index.js')).osbizAdapterDefinition as unknown as AdapterDefinition)],
  ['avaya-ipo', lazyAdapterDefinition('avaya-ipo', AvayaIpoConfigSchema, checkAvayaIpoConfig, async () => (await import('./avaya-ipo/index.js')).avayaIpoAdapterDefinition as unknown as AdapterDefinition)],
  ['innovaphone', lazyAdapterDefinition('innovaphone', InnovaphoneConfigSchema, checkInnovaphoneConfig, async () => (await import('./innovaphone/index.js')).innovaphoneAdapterDefinition as unknown as AdapterDefinition)],
])

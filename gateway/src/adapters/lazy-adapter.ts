import type { TSchema } from '@sinclair/typebox'
import type { AdapterDefinition, AdapterDeps, PbxAdapter, PbxObservation, PbxObservationListener } from './types.js'

/** What a registry entry loads on first use: the adapter's own definition (its index.ts). */
export type AdapterModuleLoader = () => Promise<AdapterDefinition>

/**
 * A registry entry whose adapter code is imported only when a connector of its type runs. Config validation
 * needs the schema alone (a small module), so a box with one OSBiz connector never loads the other PBXs' wire
 * code and its packages (protobufjs, ws): measured by npm run bench:memory (bench/README.md).
 */
export function lazyAdapterDefinition<C>(type: string, configSchema: TSchema, check: (config: C) => string[], load: AdapterModuleLoader): AdapterDefinition {
  let loaded: Promise<AdapterDefinition> | undefined
  const definition = (): Promise<AdapterDefinition> => (loaded ??= load())
  return {
    type,
    configSchema,
    // The cross-field checks run at boot and on the setup page without loading the adapter's code.
    check: check as (config: unknown) => string[],
    create: (config, deps) => new LazyAdapter(config, deps, type, definition),
  }
}

/**
 * Stands in for the real adapter until its module is loaded (at start, or at the first command), then hands every
 * call to it. Listeners registered before that are served by the real adapter's observations.
 */
class LazyAdapter implements PbxAdapter {
  readonly connectorId: string
  readonly type: string
  readonly #listeners = new Set<PbxObservationListener>()
  readonly #open: () => Promise<PbxAdapter>
  #adapter: Promise<PbxAdapter> | undefined

  constructor(config: { id: string; type: string }, deps: AdapterDeps, type: string, definition: () => Promise<AdapterDefinition>) {
    this.connectorId = config.id
    this.type = type
    this.#open = async () => {
      const adapter = (await definition()).create(config, deps)
      adapter.onObservation((observation: PbxObservation) => {
        for (const listener of [...this.#listeners]) listener(observation)
      })
      return adapter
    }
  }

  #real(): Promise<PbxAdapter> {
    return (this.#adapter ??= this.#open())
  }

  async start(): Promise<void> {
    await (await this.#real()).start()
  }

  async stop(): Promise<void> {
    // Never started and never commanded: nothing was loaded, nothing to close.
    if (!this.#adapter) return
    await (await this.#adapter).stop()
  }

  async setDnd(endpointId: string, dnd: boolean): Promise<{ dnd: boolean }> {
    return (await this.#real()).setDnd(endpointId, dnd)
  }

  onObservation(listener: PbxObservationListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }
}

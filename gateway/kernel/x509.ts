/**
 * Loads @peculiar/x509 (the relay's CA, the Graph simulator's PKI). x509 2.x loads tsyringe, which throws at load
 * time unless `Reflect.getMetadata` exists ("tsyringe requires a reflect polyfill"). We have no `reflect-metadata`
 * package, and x509 only needs the three functions below (tsyringe's `@injectable()` bookkeeping), so this installs
 * just those, only when missing, and only when called: `loadX509()` installs them right before it imports the
 * module, so merely importing this file changes no global. The box itself does not load x509
 * (gateway/src/identity/x509-writer.ts).
 */

type MetadataStore = WeakMap<object, Map<unknown, unknown>>

interface ReflectMetadataApi {
  getMetadata(key: unknown, target: object): unknown
  getOwnMetadata(key: unknown, target: object): unknown
  defineMetadata(key: unknown, value: unknown, target: object): void
}

export function ensureReflectMetadata(): void {
  const reflect = Reflect as typeof Reflect & Partial<ReflectMetadataApi>
  if (typeof reflect.getMetadata === 'function') return
  const store: MetadataStore = new WeakMap()
  const own = (key: unknown, target: object): unknown => store.get(target)?.get(key)
  const api: ReflectMetadataApi = {
    getOwnMetadata: own,
    getMetadata(key, target) {
      // Metadata is inherited along the prototype chain, as in the reflect-metadata proposal.
      for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
        const map = store.get(t)
        if (map?.has(key) === true) return map.get(key)
      }
      return undefined
    },
    defineMetadata(key, value, target) {
      let map = store.get(target)
      if (map === undefined) {
        map = new Map()
        store.set(target, map)
      }
      map.set(key, value)
    },
  }
  Object.assign(Reflect, api)
}

let x509Module: Promise<typeof import('@peculiar/x509')> | undefined

/** @peculiar/x509, imported once, after the Reflect metadata it needs is in place. */
export function loadX509(): Promise<typeof import('@peculiar/x509')> {
  ensureReflectMetadata()
  x509Module ??= import('@peculiar/x509')
  return x509Module
}

import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import type { TSchema } from '@sinclair/typebox'
import type { AdapterDefinition } from '../adapters/types.js'
import type { ConnectorConfig } from '../app.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { BoxSealer } from '../identity/box-sealer.js'

/** A field whose value is never shown back, by its name: the fallback for a schema that does not mark its secrets. */
export function isSecretField(name: string): boolean {
  return /password|secret|passphrase/i.test(name)
}

/**
 * The secret fields of an adapter's config: those its TypeBox schema marks `writeOnly: true` (the JSON Schema
 * word for "accepted, never returned"), and any whose name says password or secret.
 */
export function secretFieldsOf(schema: TSchema): string[] {
  const properties = (schema as { properties?: Record<string, { writeOnly?: unknown }> }).properties ?? {}
  return Object.entries(properties).filter(([name, property]) => property.writeOnly === true || isSecretField(name)).map(([name]) => name)
}

/** Words of a field name that say where or how a secret travels: host, port, path, TLS, CA, certificate, pin, proxy. */
const DESTINATION_WORDS = new Set(['host', 'hosts', 'port', 'path', 'url', 'uri', 'tls', 'ssl', 'ca', 'cert', 'certificate', 'pin', 'pinned', 'sha256', 'fingerprint', 'server', 'servername', 'proxy', 'codec', 'insecure', 'verify'])

/** Whether a config field decides where a stored secret is sent (camelCase split into words). */
export function isDestinationField(name: string): boolean {
  return name.split(/(?=[A-Z])|[_-]/).some((word) => DESTINATION_WORDS.has(word.toLowerCase()))
}

/**
 * The destination fields whose values differ between a stored connector and a submitted one (after defaults).
 * A stored secret may be reused only when this is empty and the type is the same: otherwise the page could be
 * made to send it to another host, port or certificate (Test connection with an empty password would do it).
 */
export function changedDestination(previous: ConnectorConfig, next: Record<string, unknown>): string[] {
  const names = new Set([...Object.keys(previous), ...Object.keys(next)].filter(isDestinationField))
  if (previous.type !== next.type) names.add('type')
  return [...names].filter((name) => name === 'type' ? previous.type !== next.type : !isDeepStrictEqual((previous as Record<string, unknown>)[name], next[name]))
}

interface StoredConnectors {
  version: 1
  connectors: Array<Record<string, unknown>>
}

/**
 * The connectors added in the setup page, in `<dataDir>/connectors.json`. Secret fields (see secretFieldsOf) are
 * sealed with the box's key (`<dataDir>/identity/seal.key`), so the file alone gives nothing away.
 */
export class ConnectorStore {
  readonly #file: string
  readonly #keyFile: string
  readonly #registry: ReadonlyMap<string, AdapterDefinition> | undefined
  #sealer: BoxSealer | undefined

  /** registry: to seal the fields each adapter's schema marks secret (without it, by name only). */
  constructor(dataDir: string, registry?: ReadonlyMap<string, AdapterDefinition>) {
    this.#file = join(dataDir, 'connectors.json')
    this.#keyFile = join(dataDir, 'identity', 'seal.key')
    this.#registry = registry
  }

  get file(): string {
    return this.#file
  }

  async load(): Promise<ConnectorConfig[]> {
    let stored: StoredConnectors
    try {
      stored = JSON.parse(await readFile(this.#file, 'utf8')) as StoredConnectors
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new Error(`cannot read ${this.#file}: ${(err as Error).message}. Fix or delete it (the connectors set up in the setup page are in it).`)
    }
    const sealer = await this.#open()
    return (stored.connectors ?? []).map((entry) => {
      const open: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(entry)) {
        const sealed = key.endsWith('$sealed') && typeof value === 'string'
        if (sealed) {
          const name = key.slice(0, -'$sealed'.length)
          open[name] = sealer.open(value, `connector:${String(entry.id)}:${name}`).toString('utf8')
        } else {
          open[key] = value
        }
      }
      return open as ConnectorConfig
    })
  }

  async save(connectors: readonly ConnectorConfig[]): Promise<void> {
    const sealer = await this.#open()
    const stored: StoredConnectors = {
      version: 1,
      connectors: connectors.map((connector) => {
        const definition = this.#registry?.get(connector.type)
        const secrets = new Set(definition ? secretFieldsOf(definition.configSchema) : [])
        const out: Record<string, unknown> = {}
        for (const [key, value] of Object.entries(connector)) {
          if ((secrets.has(key) || isSecretField(key)) && typeof value === 'string') out[`${key}$sealed`] = sealer.seal(value, `connector:${connector.id}:${key}`)
          else out[key] = value
        }
        return out
      }),
    }
    await mkdir(join(this.#file, '..'), { recursive: true })
    await writeFileAtomic(this.#file, `${JSON.stringify(stored, null, 2)}\n`, 0o600)
  }

  /** After a factory reset the key file is gone: the next use makes a new one. */
  forget(): void {
    this.#sealer = undefined
  }

  async #open(): Promise<BoxSealer> {
    this.#sealer ??= await BoxSealer.open(this.#keyFile)
    return this.#sealer
  }
}

/** The file config's connectors, then the setup page's (which cannot take an id the file config uses). */
export function mergeConnectors(fromFile: readonly ConnectorConfig[], fromUi: readonly ConnectorConfig[]): ConnectorConfig[] {
  const ids = new Set(fromFile.map((c) => c.id))
  return [...fromFile, ...fromUi.filter((c) => !ids.has(c.id))]
}

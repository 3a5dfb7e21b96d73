import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ConnectorConfig } from '../app.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { BoxSealer } from '../identity/box-sealer.js'

/** A field whose value is never shown back: the page may replace it, never read it. */
export function isSecretField(name: string): boolean {
  return /password|secret/i.test(name)
}

interface StoredConnectors {
  version: 1
  connectors: Array<Record<string, unknown>>
}

/**
 * The connectors added in the setup page, in `<dataDir>/connectors.json`. Secret fields (see isSecretField) are
 * sealed with the box's key (`<dataDir>/identity/seal.key`), so the file alone gives nothing away.
 */
export class ConnectorStore {
  readonly #file: string
  readonly #keyFile: string
  #sealer: BoxSealer | undefined

  constructor(dataDir: string) {
    this.#file = join(dataDir, 'connectors.json')
    this.#keyFile = join(dataDir, 'identity', 'seal.key')
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
        const out: Record<string, unknown> = {}
        for (const [key, value] of Object.entries(connector)) {
          if (isSecretField(key) && typeof value === 'string') out[`${key}$sealed`] = sealer.seal(value, `connector:${connector.id}:${key}`)
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

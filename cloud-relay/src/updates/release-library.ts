import { createHash, randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { basename, join, resolve, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Clock } from '#kernel/clock.js'
import type { Release, UpdateStore } from './update-store.js'

export class ReleaseError extends Error {
  constructor(readonly code: 'UPDATE_RELEASE_EXISTS' | 'UPDATE_BUNDLE_MISSING' | 'UPDATE_BUNDLE_TOO_LARGE' | 'UPDATE_BUNDLE_EMPTY' | 'UPDATE_BUNDLE_OUTSIDE', message: string) {
    super(message)
    this.name = 'ReleaseError'
  }
}

/**
 * The released versions: bundle files in one folder (`updates.dir`), their size and SHA-256 in the store. A bundle
 * is registered from a file already in the folder (copied there by the release process) or uploaded through the API;
 * either way the relay hashes it itself, so the hash in every cmd/update is the file it serves.
 */
export class ReleaseLibrary {
  readonly #dir: string
  readonly #store: UpdateStore
  readonly #clock: Clock

  constructor(options: { dir: string }, deps: { store: UpdateStore; clock: Clock }) {
    this.#dir = resolve(options.dir)
    this.#store = deps.store
    this.#clock = deps.clock
  }

  get dir(): string {
    return this.#dir
  }

  list(): Promise<Release[]> {
    return this.#store.listReleases()
  }

  get(version: string): Promise<Release | undefined> {
    return this.#store.getRelease(version)
  }

  /** Registers `fileName`, a file in the bundle folder, as `version`. */
  async register(version: string, fileName: string, notes: string, by: string): Promise<Release> {
    await this.#refuseExisting(version)
    const path = resolve(this.#dir, fileName)
    if (!path.startsWith(this.#dir + sep) || basename(path) !== fileName) {
      throw new ReleaseError('UPDATE_BUNDLE_OUTSIDE', `"${fileName}" is not a file name in the bundle folder ${this.#dir}: copy the bundle there and give its name only.`)
    }
    let size: number
    try {
      const info = await stat(path)
      if (!info.isFile()) throw new Error('not a regular file')
      size = info.size
    } catch (err) {
      throw new ReleaseError('UPDATE_BUNDLE_MISSING', `No bundle file ${fileName} in ${this.#dir} (${(err as Error).message}): copy it there first, or upload it with PUT /api/v1/updates/releases/${version}/bundle.`)
    }
    if (size === 0) throw new ReleaseError('UPDATE_BUNDLE_EMPTY', `${fileName} is empty: copy the whole bundle.`)
    const hash = createHash('sha256')
    await pipeline(createReadStream(path), hash)
    return this.#add({ version, size, sha256: hash.digest('hex'), filePath: path, notes, createdBy: by, createdAt: new Date(this.#clock.now()) })
  }

  /** Streams an uploaded bundle to disk (never into memory), hashing as it goes; refuses beyond maxBytes. */
  async upload(version: string, body: Readable, maxBytes: number, notes: string, by: string): Promise<Release> {
    await this.#refuseExisting(version)
    await mkdir(this.#dir, { recursive: true })
    const path = join(this.#dir, `${version}.raucb`)
    const partial = join(this.#dir, `.${version}.${randomUUID()}.part`)
    const hash = createHash('sha256')
    let size = 0
    try {
      await pipeline(body, async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length
          if (size > maxBytes) throw new ReleaseError('UPDATE_BUNDLE_TOO_LARGE', `The bundle is larger than the ${maxBytes} bytes the relay takes (updates.maxBundleBytes): nothing was stored.`)
          hash.update(chunk)
          yield chunk
        }
      }, createWriteStream(partial, { mode: 0o640 }))
      if (size === 0) throw new ReleaseError('UPDATE_BUNDLE_EMPTY', 'The upload was empty: send the bundle file as the request body (Content-Type: application/octet-stream).')
      await rename(partial, path)
    } catch (err) {
      await rm(partial, { force: true })
      throw err
    }
    return this.#add({ version, size, sha256: hash.digest('hex'), filePath: path, notes, createdBy: by, createdAt: new Date(this.#clock.now()) })
  }

  async #refuseExisting(version: string): Promise<void> {
    if (await this.#store.getRelease(version)) {
      throw new ReleaseError('UPDATE_RELEASE_EXISTS', `Version ${version} is released already: a version names one bundle forever; give the new bundle a new version.`)
    }
  }

  async #add(release: Release): Promise<Release> {
    if (!(await this.#store.addRelease(release))) {
      throw new ReleaseError('UPDATE_RELEASE_EXISTS', `Version ${release.version} was released at the same moment by another request: give the new bundle a new version.`)
    }
    return release
  }
}

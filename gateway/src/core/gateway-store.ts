import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Low } from 'lowdb'
import { JSONFile } from 'lowdb/node'

/** What the gateway keeps on disk between runs (atomic JSON writes through lowdb). */
interface GatewayStateFile {
  /** Highest sequence number that may have been used; the next run starts above it. */
  seqReserved: number
  /** Endpoint keys ("connector/endpoint") whose DND the gateway switched on and has not released. */
  ownedDnd: string[]
}

/** Sequence numbers are reserved on disk in blocks, so a publish never waits for a write but `seq` still
 *  only grows across restarts and crashes (a crash leaves a gap, never a repeat). */
const SEQ_BLOCK = 1000

export class GatewayStore {
  readonly #db: Low<GatewayStateFile>
  readonly #file: string
  #seq = 0
  #writing: Promise<void> = Promise.resolve()

  constructor(file: string) {
    this.#file = file
    this.#db = new Low<GatewayStateFile>(new JSONFile(file), { seqReserved: 0, ownedDnd: [] })
  }

  async open(): Promise<void> {
    // The box's dataDir (when this makes it) holds its identity and PBX credentials: the service's user only.
    await mkdir(dirname(this.#file), { recursive: true, mode: 0o700 })
    await this.#db.read()
    this.#db.data.seqReserved ??= 0
    this.#db.data.ownedDnd ??= []
    this.#seq = this.#db.data.seqReserved
    await this.#reserve()
  }

  get ownedDnd(): readonly string[] {
    return this.#db.data.ownedDnd
  }

  /** Next sequence number. Reserves the next block in the background well before this one runs out. */
  nextSeq(): number {
    this.#seq += 1
    if (this.#seq > this.#db.data.seqReserved - SEQ_BLOCK / 2) void this.#reserve()
    if (this.#seq > this.#db.data.seqReserved) {
      // Only reachable if more than half a block is published while one write is in flight; stay monotonic
      // by reserving synchronously in memory — the write below persists it.
      this.#db.data.seqReserved = this.#seq + SEQ_BLOCK
    }
    return this.#seq
  }

  async setOwnedDnd(keys: readonly string[]): Promise<void> {
    const sorted = [...keys].sort()
    if (sorted.join('\n') === this.#db.data.ownedDnd.join('\n')) return
    this.#db.data.ownedDnd = sorted
    await this.#write()
  }

  async flush(): Promise<void> {
    await this.#writing
  }

  async #reserve(): Promise<void> {
    const target = this.#seq + SEQ_BLOCK
    if (this.#db.data.seqReserved >= target) return
    this.#db.data.seqReserved = target
    await this.#write()
  }

  #write(): Promise<void> {
    this.#writing = this.#writing.then(() => this.#db.write())
    return this.#writing
  }
}

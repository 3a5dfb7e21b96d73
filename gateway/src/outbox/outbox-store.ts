import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { encodeDrop, encodePut, MAGIC, putFrameBytes, readFrame, type OutboxRecord } from './record-codec.js'
import { syncDirectory } from '../identity/atomic-file.js'

export type { OutboxRecord } from './record-codec.js'

export const OUTBOX_DEFAULTS = {
  maxBytes: 64 * 1024 * 1024,
  maxRecords: 200_000,
  maxAgeMs: 7 * 24 * 3600_000,
  /** Below this file size the log is never rewritten: not worth the I/O. */
  compactMinBytes: 1024 * 1024,
} as const

export interface OutboxOptions {
  /** Folder of the log, normally `<dataDir>/outbox`. Created if missing. */
  dir: string
  /** Bound on the live records' bytes on disk (default 64 MiB). They are also held in memory. */
  maxBytes?: number
  /** Bound on the number of live records (default 200,000). */
  maxRecords?: number
  /** Records older than this (ms, default 7 days) are dropped. */
  maxAgeMs?: number
  compactMinBytes?: number
}

export interface OutboxDeps {
  logger: Logger
  clock: Clock
  counters: Counters
}

export type OutboxErrorCode = 'OUTBOX_NOT_OPEN' | 'OUTBOX_WRITE_FAILED' | 'OUTBOX_BAD_RECORD'

export class OutboxError extends Error {
  constructor(readonly code: OutboxErrorCode, message: string) {
    super(message)
    this.name = 'OutboxError'
  }
}

/** What `put` takes: the record minus what the store fills in. */
export interface OutboxEntry {
  seq: number
  topic: string
  payload: Buffer
  retain?: boolean
}

export interface OutboxStats {
  /** Undelivered records. */
  records: number
  /** Bytes those records occupy in the log. */
  liveBytes: number
  /** Size of the log file (live + dead records not yet compacted away). */
  fileBytes: number
  fsyncs: number
  compactions: number
  /** Highest seq ever seen by this store (puts and drops, this run and on disk). */
  maxSeq: number
}

type DropReason = 'size' | 'count' | 'age'

const LOG_FILE = 'outbox.log'
const TMP_FILE = 'outbox.log.tmp'
const DROP_LOG_INTERVAL_MS = 10_000

/** Coalescing keys: one live record per key, the latest put wins. */
export const outboxKeys = {
  endpoint: (connectorId: string, endpointId: string): string => `endpoint/${connectorId}/${endpointId}`,
  link: (connectorId: string): string => `link/${connectorId}`,
  directory: (connectorId: string): string => `directory/${connectorId}`,
}

/**
 * The box's durable outbox (DESIGN §8): every state change that must reach the relay, on disk until the broker
 * acknowledges it. An append-only log of CRC-checked records, group-committed (one fdatasync per batch, the
 * next batch forming while the previous sync runs), coalesced per key, bounded by bytes, count and age, and
 * compacted when dead records dominate. A torn tail from a power cut is cut off at open.
 */
export class OutboxStore {
  readonly #dir: string
  readonly #file: string
  readonly #maxBytes: number
  readonly #maxRecords: number
  readonly #maxAgeMs: number
  readonly #compactMinBytes: number
  readonly #deps: OutboxDeps
  readonly #log: Logger

  /** Live records by seq, in put order (which is age order). */
  readonly #bySeq = new Map<number, OutboxRecord>()
  readonly #seqByKey = new Map<string, number>()
  /** Whether put order is also seq order (true unless a seq ever went backwards). */
  #ordered = true
  #lastPutSeq = -Infinity
  #maxSeq = 0
  #liveBytes = 0

  #fh: FileHandle | undefined
  #opening: Promise<void> | undefined
  #closed = false
  #fileBytes = 0
  #fsyncs = 0
  #compactions = 0

  #queued: Buffer[] = []
  #waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = []
  #writing: Promise<void> | undefined
  #lastWriteError = ''

  #ageTimer: ClockTimer | undefined
  readonly #dropsUnlogged: Record<DropReason, number> = { size: 0, count: 0, age: 0 }
  #lastDropLog = -Infinity

  constructor(options: OutboxOptions, deps: OutboxDeps) {
    this.#dir = options.dir
    this.#file = join(options.dir, LOG_FILE)
    this.#maxBytes = options.maxBytes ?? OUTBOX_DEFAULTS.maxBytes
    this.#maxRecords = options.maxRecords ?? OUTBOX_DEFAULTS.maxRecords
    this.#maxAgeMs = options.maxAgeMs ?? OUTBOX_DEFAULTS.maxAgeMs
    this.#compactMinBytes = options.compactMinBytes ?? OUTBOX_DEFAULTS.compactMinBytes
    this.#deps = deps
    this.#log = deps.logger
  }

  get size(): number {
    return this.#bySeq.size
  }

  get isOpen(): boolean {
    return this.#fh !== undefined && !this.#closed
  }

  stats(): OutboxStats {
    return {
      records: this.#bySeq.size,
      liveBytes: this.#liveBytes,
      fileBytes: this.#fileBytes,
      fsyncs: this.#fsyncs,
      compactions: this.#compactions,
      maxSeq: this.#maxSeq,
    }
  }

  /**
   * Reads the log, cuts off a torn tail, applies the bounds. Idempotent while open; after close() it reads the log
   * again (the gateway closes and reopens its outbox when it restarts after an enrollment in the setup page).
   */
  open(): Promise<void> {
    if (this.#closed) this.#reset()
    this.#opening ??= this.#open()
    return this.#opening
  }

  /** Forgets what a closed outbox held in memory; the log on disk (flushed by close) is read again by open. */
  #reset(): void {
    this.#closed = false
    this.#opening = undefined
    this.#bySeq.clear()
    this.#seqByKey.clear()
    this.#ordered = true
    this.#lastPutSeq = -Infinity
    this.#liveBytes = 0
    this.#fileBytes = 0
  }

  async #open(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 })
    await rm(join(this.#dir, TMP_FILE), { force: true }) // a compaction cut short: the old log is still whole
    let file: Buffer
    try {
      file = await readFile(this.#file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      file = Buffer.alloc(0)
    }
    let good = MAGIC.length
    if (file.length < MAGIC.length || !file.subarray(0, MAGIC.length).equals(MAGIC)) {
      if (file.length > 0 && !MAGIC.subarray(0, file.length).equals(file.subarray(0, MAGIC.length))) {
        // Not an outbox log (or its header is destroyed): keep it for inspection, start empty.
        const aside = join(this.#dir, `outbox.log.unreadable-${this.#deps.clock.now()}`)
        await rename(this.#file, aside)
        this.#deps.counters.inc('outbox.unreadable_files')
        this.#log.error({ file: this.#file, movedTo: aside, bytes: file.length },
          'outbox log has no valid header: moved aside and started empty; undelivered changes in it are lost, the snapshot on connect resends the current state')
      }
      await this.#createEmpty()
      file = Buffer.from(MAGIC)
    } else {
      let records = 0
      for (;;) {
        const result = readFrame(file, good)
        if (result.ok === 'end') break
        if (result.ok === false) {
          const dropped = file.length - good
          this.#deps.counters.inc('outbox.truncated_bytes', dropped)
          this.#log.warn({ file: this.#file, offset: good, droppedBytes: dropped, reason: result.reason },
            'outbox log ended in a torn or corrupt record (power cut during a write?): cut it off; every record before it is intact')
          break
        }
        records += 1
        this.#apply(result.operation.op === 'put' ? result.operation.record : result.operation.seq)
        good = result.next
      }
      this.#log.debug({ records, live: this.#bySeq.size, bytes: good }, 'outbox log read')
    }
    this.#fh = await open(this.#file, 'r+')
    if (good < file.length) {
      await this.#fh.truncate(good)
      await this.#fh.datasync()
    }
    this.#fileBytes = good
    this.#enforceBounds()
    if (this.#shouldCompact()) await this.#compactNow()
    this.#scheduleAgeCheck()
    if (this.#bySeq.size > 0) this.#log.info({ records: this.#bySeq.size, bytes: this.#liveBytes }, 'outbox holds undelivered records from before the restart')
  }

  async #createEmpty(): Promise<void> {
    const fh = await open(this.#file, 'w')
    try {
      await fh.write(MAGIC)
      await fh.datasync()
    } finally {
      await fh.close()
    }
    await syncDirectory(this.#dir)
  }

  /** Replays one log operation into memory (used at open). */
  #apply(operation: OutboxRecord | number): void {
    if (typeof operation === 'number') {
      this.#maxSeq = Math.max(this.#maxSeq, operation)
      this.#remove(operation)
      return
    }
    this.#insert(operation)
  }

  #insert(record: OutboxRecord): void {
    const previous = this.#seqByKey.get(record.key)
    if (previous !== undefined) {
      this.#remove(previous)
      this.#deps.counters.inc('outbox.coalesced')
    }
    // A re-put under the same seq (a compaction copy) must not count twice.
    if (this.#bySeq.has(record.seq)) this.#remove(record.seq)
    this.#bySeq.set(record.seq, record)
    this.#seqByKey.set(record.key, record.seq)
    this.#liveBytes += putFrameBytes(record)
    if (record.seq <= this.#lastPutSeq) this.#ordered = false
    this.#lastPutSeq = Math.max(this.#lastPutSeq, record.seq)
    this.#maxSeq = Math.max(this.#maxSeq, record.seq)
  }

  #remove(seq: number): OutboxRecord | undefined {
    const record = this.#bySeq.get(seq)
    if (!record) return undefined
    this.#bySeq.delete(seq)
    if (this.#seqByKey.get(record.key) === seq) this.#seqByKey.delete(record.key)
    this.#liveBytes -= putFrameBytes(record)
    if (this.#bySeq.size === 0) {
      this.#ordered = true
      this.#lastPutSeq = -Infinity
    }
    return record
  }

  /**
   * Stores `entry` as the latest record for `key`, replacing an older one. Visible to `pending()` at once; the
   * promise resolves when the record is on disk (fdatasync), and rejects if the disk refused it.
   */
  put(key: string, entry: OutboxEntry): Promise<void> {
    if (!this.isOpen) return Promise.reject(new OutboxError('OUTBOX_NOT_OPEN', 'outbox is not open: call open() first (or it was closed)'))
    if (!Number.isSafeInteger(entry.seq) || entry.seq < 0) {
      return Promise.reject(new OutboxError('OUTBOX_BAD_RECORD', `seq must be a non-negative integer, got ${entry.seq}`))
    }
    const record: OutboxRecord = { key, seq: entry.seq, at: this.#deps.clock.now(), topic: entry.topic, retain: entry.retain ?? false, payload: entry.payload }
    let frame: Buffer
    try {
      frame = encodePut(record)
    } catch (err) {
      return Promise.reject(new OutboxError('OUTBOX_BAD_RECORD', (err as Error).message))
    }
    this.#insert(record)
    this.#deps.counters.inc('outbox.puts')
    this.#enforceBounds()
    return this.#append(frame)
  }

  /**
   * The broker acknowledged the record with this seq. Removes it only if it is still the latest for its key (an
   * older seq, replaced since, is already gone). Returns whether a record was removed. The removal is written
   * in the next batch; lost in a crash, the record is simply delivered once more.
   */
  ack(seq: number): boolean {
    if (!this.isOpen) return false
    if (!this.#remove(seq)) return false
    this.#deps.counters.inc('outbox.acked')
    this.#append(encodeDrop(seq)).catch(() => undefined) // logged by the writer
    return true
  }

  get(seq: number): OutboxRecord | undefined {
    return this.#bySeq.get(seq)
  }

  latest(key: string): OutboxRecord | undefined {
    const seq = this.#seqByKey.get(key)
    return seq === undefined ? undefined : this.#bySeq.get(seq)
  }

  /** Every undelivered record in seq order. */
  pending(): OutboxRecord[] {
    const records = [...this.#bySeq.values()]
    if (!this.#ordered) records.sort((a, b) => a.seq - b.seq)
    return records
  }

  /** Resolves when everything put or acked so far is on disk. */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing
  }

  /** Rewrites the log with only the live records (also done by itself when dead records dominate). */
  async compact(): Promise<void> {
    if (!this.isOpen) return
    await this.flush()
    await this.#compactNow()
  }

  /** Waits for pending writes, closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    await this.#opening?.catch(() => undefined)
    this.#closed = true
    this.#deps.clock.clearTimeout(this.#ageTimer)
    await this.flush()
    const fh = this.#fh
    this.#fh = undefined
    await fh?.close()
  }

  #append(frame: Buffer): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }))
    this.#queued.push(frame)
    this.#writing ??= this.#writeLoop()
    return done
  }

  async #writeLoop(): Promise<void> {
    // One write + one fdatasync per batch: whatever was appended while the previous batch was syncing.
    while (this.#queued.length > 0) {
      const frames = this.#queued
      const waiters = this.#waiters
      this.#queued = []
      this.#waiters = []
      const fh = this.#fh
      try {
        if (!fh) throw new OutboxError('OUTBOX_NOT_OPEN', 'outbox was closed while writing')
        const buffer = frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames)
        await writeFully(fh, buffer, this.#fileBytes)
        await fh.datasync()
        this.#fileBytes += buffer.length
        this.#fsyncs += 1
        this.#deps.counters.inc('outbox.fsyncs')
        this.#lastWriteError = ''
        for (const waiter of waiters) waiter.resolve()
      } catch (err) {
        // Cut off whatever part of the batch may have landed, so the next batch follows a clean record.
        await fh?.truncate(this.#fileBytes).catch(() => undefined)
        const message = (err as Error).message
        this.#deps.counters.inc('outbox.write_failures')
        if (message !== this.#lastWriteError) {
          this.#log.error({ dir: this.#dir, err: message, records: frames.length },
            'outbox write failed: these changes are kept in memory only until it works again; check free space and permissions of the data folder')
        }
        this.#lastWriteError = message
        const error = err instanceof OutboxError ? err : new OutboxError('OUTBOX_WRITE_FAILED', `outbox write failed: ${message}`)
        for (const waiter of waiters) waiter.reject(error)
      }
      if (this.#shouldCompact()) await this.#compactNow().catch((err: unknown) => {
        this.#deps.counters.inc('outbox.compaction_failures')
        this.#log.error({ dir: this.#dir, err: (err as Error).message }, 'outbox compaction failed: the log keeps growing until it works; check free space in the data folder')
      })
    }
    this.#writing = undefined
  }

  #shouldCompact(): boolean {
    const dead = this.#fileBytes - MAGIC.length - this.#liveBytes
    return this.#fh !== undefined && this.#fileBytes > this.#compactMinBytes && dead > this.#liveBytes
  }

  /** Live records → temp file → fdatasync → rename over the log → fsync the folder. Runs inside the writer. */
  async #compactNow(): Promise<void> {
    const old = this.#fh
    if (!old) return
    const before = this.#fileBytes
    const started = performance.now()
    // Taken synchronously: appends queued from now on go to the new file after it.
    const chunks: Buffer[] = [MAGIC]
    for (const record of this.#bySeq.values()) chunks.push(encodePut(record))
    const content = Buffer.concat(chunks)
    const tmp = join(this.#dir, TMP_FILE)
    const fh = await open(tmp, 'w')
    try {
      await writeFully(fh, content, 0)
      await fh.datasync()
    } catch (err) {
      await fh.close().catch(() => undefined)
      await rm(tmp, { force: true }).catch(() => undefined)
      throw err
    }
    await fh.close()
    await rename(tmp, this.#file)
    await syncDirectory(this.#dir)
    await old.close().catch(() => undefined)
    this.#fh = await open(this.#file, 'r+')
    this.#fileBytes = content.length
    this.#fsyncs += 2
    this.#compactions += 1
    this.#deps.counters.inc('outbox.compactions')
    this.#log.debug({ beforeBytes: before, afterBytes: content.length, records: this.#bySeq.size, ms: Math.round(performance.now() - started) }, 'outbox compacted')
  }

  #enforceBounds(): void {
    const now = this.#deps.clock.now()
    for (const record of this.#bySeq.values()) {
      let reason: DropReason | undefined
      if (this.#bySeq.size > this.#maxRecords) reason = 'count'
      else if (this.#liveBytes > this.#maxBytes) reason = 'size'
      else if (now - record.at > this.#maxAgeMs) reason = 'age'
      if (!reason) break
      this.#remove(record.seq)
      this.#append(encodeDrop(record.seq)).catch(() => undefined)
      this.#deps.counters.inc(`outbox.dropped_${reason}`)
      this.#dropsUnlogged[reason] += 1
    }
    this.#logDrops(now)
  }

  #logDrops(now: number): void {
    const { size, count, age } = this.#dropsUnlogged
    if (size + count + age === 0 || now - this.#lastDropLog < DROP_LOG_INTERVAL_MS) return
    this.#lastDropLog = now
    this.#dropsUnlogged.size = this.#dropsUnlogged.count = this.#dropsUnlogged.age = 0
    this.#log.warn({
      droppedForSize: size, droppedForCount: count, droppedForAge: age,
      maxBytes: this.#maxBytes, maxRecords: this.#maxRecords, maxAgeMs: this.#maxAgeMs, records: this.#bySeq.size,
    }, 'outbox bound reached: dropped the oldest undelivered changes (the snapshot on reconnect still sends the current state); restore the relay link, or raise outbox.maxBytes / maxRecords / maxAgeDays')
  }

  #scheduleAgeCheck(): void {
    if (this.#closed) return
    const period = Math.max(1000, Math.min(60_000, Math.floor(this.#maxAgeMs / 4)))
    this.#ageTimer = this.#deps.clock.setTimeout(() => {
      if (!this.isOpen) return
      this.#enforceBounds()
      this.#scheduleAgeCheck()
    }, period)
  }
}

async function writeFully(fh: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let written = 0
  while (written < buffer.length) {
    const { bytesWritten } = await fh.write(buffer, written, buffer.length - written, position + written)
    if (bytesWritten <= 0) throw new Error('write made no progress')
    written += bytesWritten
  }
}


/** Size of the log on disk, for benchmarks and tools. */
export async function outboxFileBytes(dir: string): Promise<number> {
  try {
    return (await stat(join(dir, LOG_FILE))).size
  } catch {
    return 0
  }
}

import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { FINAL_UPDATE_STATES, type ResultData, type UpdateCommandData, type UpdateProgressData, type UpdateState } from '../../protocol/schemas.js'
import type { UpdateCommandSink } from '../app.js'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { syncDirectory, syncFile } from '../identity/atomic-file.js'
import { relayRequest } from '../identity/relay-trust.js'
import type { SlotInstaller } from './slot-installer.js'

/** What the agent keeps on the data partition: it survives a restart, a reboot into the new slot and a rollback. */
interface AgentState {
  command: UpdateCommandData
  state: UpdateState
  reason?: string | undefined
  bytes?: number | undefined
  /** Where the box was before the reboot: a boot into another slot on the new version is the update taking. */
  previousSlot?: string | undefined
  previousVersion: string
  at: number
}

export interface UpdateAgentOptions {
  /** A folder on the data partition (…/update): the partial download, the bundle, update-state.json. */
  dir: string
  /** The version this box runs now. */
  runningVersion: string
  /** Download attempts after a broken connection before the update fails (default 8). */
  downloadAttempts?: number
  /** First retry delay, doubling up to a minute (default 2 s). */
  retryBaseMs?: number
  /** Progress reports while downloading, at most one per this many ms (default 2 s). */
  reportEveryMs?: number
  /** How long the new version has to become healthy after the reboot before the agent gives up on it (default 5 min). */
  healthTimeoutMs?: number
}

export interface UpdateAgentDeps {
  installer: SlotInstaller
  clock: Clock
  logger: Logger
  counters: Counters
  /**
   * HTTPS to the relay: the box's trust in it (system CAs, relay CA, pin). A function is called at the first
   * download: the box then loads undici only when an update comes (0.1 s and 3.5 MiB at every start otherwise).
   */
  dispatcher?: Dispatcher | (() => Promise<Dispatcher>) | undefined
  /** Resolves true once the gateway is healthy (service up, setup page answering, tunnel connected if enrolled). */
  healthy?: () => Promise<boolean>
}

class UpdateFailure extends Error {}

const FINAL = new Set<UpdateState>(FINAL_UPDATE_STATES)
/** Where the image's trial check (firmware/image/rootfs/usr/libexec/pbxgw/trial-check) says why a new slot was given up. */
export const TRIAL_FAILURE_FILE = 'trial-failure'
/** The token of a bundle uploaded on the setup page (no relay to download it from again). */
const UPLOAD_TOKEN = 'uploaded-on-the-setup-page'


/**
 * The box's update agent: takes cmd/update (or an uploaded bundle), downloads with resume into the data partition,
 * checks size, SHA-256 and signature, installs to the inactive slot, reboots at the chosen time, and after the
 * reboot decides healthy (new version, other slot, health checks pass → mark good) or rolled back (the box came back
 * on the previous version). Every step is reported on the update topic and kept in update-state.json.
 */
export class UpdateAgent implements UpdateCommandSink {
  readonly #options: Required<Omit<UpdateAgentOptions, 'dir' | 'runningVersion'>> & Pick<UpdateAgentOptions, 'dir' | 'runningVersion'>
  readonly #deps: UpdateAgentDeps
  readonly #log: Logger
  #publish: ((progress: UpdateProgressData) => void) | undefined
  #state: AgentState | undefined
  #slot = 'unknown'
  #running: Promise<void> | undefined
  #rebootTimer: ClockTimer | undefined
  #stopped = false
  #lastReport = 0
  #saving: Promise<void> = Promise.resolve()
  readonly #listeners = new Set<(progress: UpdateProgressData) => void>()

  constructor(options: UpdateAgentOptions, deps: UpdateAgentDeps) {
    this.#options = { downloadAttempts: 8, retryBaseMs: 2000, reportEveryMs: 2000, healthTimeoutMs: 5 * 60_000, ...options }
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'update-agent' })
  }

  get #stateFile(): string {
    return join(this.#options.dir, 'update-state.json')
  }

  /** The latest progress (the box's setup page shows it). */
  latest(): UpdateProgressData | undefined {
    return this.#state ? this.#progress(this.#state) : undefined
  }

  /** The slot the box booted (for its status), known after start(). */
  get slot(): string {
    return this.#slot
  }

  onProgress(listener: (progress: UpdateProgressData) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  attach(publish: (progress: UpdateProgressData) => void): void {
    this.#publish = publish
  }

  onConnect(): void {
    if (this.#state) this.#publish?.(this.#progress(this.#state))
  }

  /** Reads the kept state: finishes an update after its reboot, or resumes one a restart interrupted. */
  async start(): Promise<void> {
    this.#stopped = false
    await mkdir(this.#options.dir, { recursive: true })
    this.#slot = await this.#deps.installer.bootedSlot().catch((err: unknown) => {
      this.#log.warn({ err: (err as Error).message }, 'booted slot unknown')
      return 'unknown'
    })
    this.#state = await readFile(this.#stateFile, 'utf8').then((text) => JSON.parse(text) as AgentState).catch(() => undefined)
    const state = this.#state
    if (!state || FINAL.has(state.state)) return
    if (state.state === 'rebooting') {
      this.#running = this.#afterReboot(state)
      return
    }
    if (state.state === 'installing') {
      // Cut off while writing the slot: the old slot is still the one that boots; the write is started again.
      this.#log.warn({ version: state.command.version }, 'the box restarted during an install; installing again')
    }
    this.#running = this.#run(state)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#rebootTimer) this.#deps.clock.clearTimeout(this.#rebootTimer)
    await this.#running?.catch(() => undefined)
    await this.#saving.catch(() => undefined)
  }

  /** Waits for the current update's work (tests). */
  async idle(): Promise<void> {
    while (this.#running) {
      const current = this.#running
      await current.catch(() => undefined)
      if (this.#running === current) return
    }
  }

  async accept(command: UpdateCommandData): Promise<Omit<ResultData, 'correlationId' | 'command'>> {
    const current = this.#state
    if (current && !FINAL.has(current.state)) {
      if (current.command.updateId === command.updateId && current.command.version === command.version) {
        // The relay sent it again (a restart, a lost answer): a fresh token, the same update continues.
        current.command = { ...current.command, token: command.token, url: command.url }
        await this.#save(current)
        return { ok: true }
      }
      return { ok: false, error: { code: 'GW_UPDATE_BUSY', message: `the box is already updating to ${current.command.version} (${current.state}): wait until it finishes` } }
    }
    const state: AgentState = { command, state: 'queued', previousVersion: this.#options.runningVersion, at: this.#deps.clock.now() }
    if (command.version === this.#options.runningVersion) {
      state.state = 'healthy'
      state.reason = `already running ${command.version}`
      await this.#enter(state, 'healthy')
      return { ok: true }
    }
    await this.#enter(state, 'queued')
    this.#running = this.#run(state)
    return { ok: true }
  }

  /**
   * A bundle uploaded on the setup page (sites without a relay), already on the data partition with its size and
   * SHA-256 measured while it streamed in: checked, installed and rebooted into like one from the relay.
   */
  async acceptUpload(file: string, size: number, sha256: string): Promise<{ ok: true } | { ok: false; message: string }> {
    const current = this.#state
    if (current && !FINAL.has(current.state)) {
      await rm(file, { force: true })
      return { ok: false, message: `the box is already updating to ${current.command.version} (${current.state}): wait until it finishes` }
    }
    const now = this.#deps.clock.now()
    const command: UpdateCommandData = { updateId: `upload-${now.toString(36)}`, version: 'uploaded', size, sha256, url: 'https://setup-page.invalid/upload', token: UPLOAD_TOKEN, installAt: 'now' }
    await mkdir(this.#options.dir, { recursive: true })
    // On disk before the install starts: a power cut must not leave a bundle whose last blocks were never written.
    await syncFile(file)
    await rename(file, this.#bundlePath(command))
    await syncDirectory(this.#options.dir)
    const state: AgentState = { command, state: 'queued', previousVersion: this.#options.runningVersion, at: now }
    await this.#enter(state, 'queued')
    this.#running = this.#run(state)
    return { ok: true }
  }

  async #run(state: AgentState): Promise<void> {
    try {
      if (state.state === 'installing') await this.#recheckAfterRestart(state)
      if (state.state === 'queued' || state.state === 'downloading' || state.state === 'verifying') {
        const bundle = await this.#download(state)
        await this.#enter(state, 'verifying')
        await this.#verifyFile(state, bundle)
        const signed = await this.#deps.installer.verify(bundle).catch((err: unknown) => {
          throw new UpdateFailure((err as Error).message)
        })
        if (state.command.version === 'uploaded' && signed.version) state.command.version = signed.version
        else if (signed.version && signed.version !== state.command.version) {
          throw new UpdateFailure(`the bundle says it is version ${signed.version}, the relay said ${state.command.version}: the release was registered with the wrong version`)
        }
        await this.#enter(state, 'installing')
      }
      if (this.#stopped) return
      const bundle = this.#bundlePath(state.command)
      await this.#deps.installer.install(bundle, (percent, what) => this.#log.info({ percent, what }, 'installing'))
        .catch((err: unknown) => {
          throw new UpdateFailure((err as Error).message)
        })
      await rm(bundle, { force: true })
      state.previousSlot = this.#slot
      await this.#enter(state, 'rebooting')
      this.#scheduleReboot(state)
    } catch (err) {
      if (this.#stopped) return
      const reason = err instanceof UpdateFailure ? err.message : `unexpected: ${(err as Error).message}`
      state.reason = reason.slice(0, 500)
      this.#deps.counters.inc('update.failed')
      await this.#enter(state, 'failed')
      await rm(this.#partialPath(state.command), { force: true })
      await rm(this.#bundlePath(state.command), { force: true })
    }
  }

  #scheduleReboot(state: AgentState): void {
    const at = state.command.installAt === 'now' ? this.#deps.clock.now() : Date.parse(state.command.installAt)
    const delay = Math.max(0, at - this.#deps.clock.now())
    this.#log.info({ version: state.command.version, inMs: delay }, 'rebooting into the new version')
    this.#rebootTimer = this.#deps.clock.setTimeout(() => {
      this.#rebootTimer = undefined
      this.#deps.installer.reboot().catch((err: unknown) => this.#log.error({ err: (err as Error).message }, 'reboot failed'))
    }, delay)
  }

  /** After the reboot: on the new version in the other slot and healthy → mark good; back on the old one → rolled back. */
  async #afterReboot(state: AgentState): Promise<void> {
    const target = state.command.version
    if (this.#options.runningVersion === target && this.#slot !== state.previousSlot) {
      const healthy = await this.#waitHealthy()
      if (healthy) {
        await this.#markGood()
        state.reason = undefined
        await this.#enter(state, 'healthy')
        this.#deps.counters.inc('update.healthy')
        return
      }
      // Not marked good: the boot counter runs out and the box boots the previous slot, where this agent reports.
      this.#log.error({ version: target }, 'the new version did not become healthy in time; rebooting so the previous slot takes over')
      state.reason = `version ${target} did not become healthy within ${Math.round(this.#options.healthTimeoutMs / 1000)} s (service, setup page or tunnel)`
      await this.#save(state)
      await this.#deps.installer.reboot()
      return
    }
    if (this.#options.runningVersion === target) {
      // Installed while running target already (same slot): nothing to roll back from.
      await this.#enter(state, 'healthy')
      return
    }
    // The image's trial check writes why the new slot was given up (e.g. "the gateway stopped at start 3 times").
    const trial = await readFile(join(this.#options.dir, TRIAL_FAILURE_FILE), 'utf8').then((text) => text.trim().slice(0, 300)).catch(() => '')
    await rm(join(this.#options.dir, TRIAL_FAILURE_FILE), { force: true })
    state.reason = trial
      ? `the box came back on ${this.#options.runningVersion} in slot ${this.#slot}: ${trial}`
      : state.reason ?? `the box came back on ${this.#options.runningVersion} in slot ${this.#slot}: version ${target} did not start within the boot attempts`
    this.#deps.counters.inc('update.rolled_back')
    await this.#enter(state, 'rolled-back')
  }

  /** Marks the slot good, trying again for a minute: RAUC's service may still be starting on a slow box. */
  async #markGood(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#deps.installer.markGood()
        return
      } catch (err) {
        if (attempt >= 6 || this.#stopped) throw err
        this.#log.warn({ err: (err as Error).message, attempt }, 'marking the slot good failed; trying again in 10 s')
        await new Promise<void>((resolve) => this.#deps.clock.setTimeout(resolve, 10_000))
      }
    }
  }

  async #waitHealthy(): Promise<boolean> {
    const check = this.#deps.healthy
    if (!check) return true
    const deadline = this.#deps.clock.now() + this.#options.healthTimeoutMs
    while (!this.#stopped && this.#deps.clock.now() < deadline) {
      if (await check().catch(() => false)) return true
      await new Promise<void>((resolve) => this.#deps.clock.setTimeout(resolve, 2000))
    }
    return false
  }

  #partialPath(command: UpdateCommandData): string {
    return join(this.#options.dir, `${command.sha256}.raucb.part`)
  }

  #bundlePath(command: UpdateCommandData): string {
    return join(this.#options.dir, `${command.sha256}.raucb`)
  }

  /** Fetches the bundle into the partial file, continuing from its size (Range + If-Range) after any interruption. */
  async #download(state: AgentState): Promise<string> {
    const { command } = state
    const partial = this.#partialPath(command)
    const bundle = this.#bundlePath(command)
    if (await stat(bundle).then((s) => s.size === command.size, () => false)) return bundle
    let attempt = 0
    for (;;) {
      if (this.#stopped) throw new UpdateFailure('stopped')
      const have = await stat(partial).then((s) => s.size, () => 0)
      if (have > command.size) await truncate(partial, 0)
      const from = have > command.size ? 0 : have
      if (from === command.size) break
      state.bytes = from
      await this.#enter(state, 'downloading', true)
      try {
        await this.#fetch(state, from, partial)
        break
      } catch (err) {
        if (err instanceof UpdateFailure || this.#stopped) throw err
        attempt++
        this.#deps.counters.inc('update.download_retries')
        if (attempt >= this.#options.downloadAttempts) throw new UpdateFailure(`the download broke off ${attempt} times (last: ${(err as Error).message}); the relay sends the update again`)
        const wait = Math.min(60_000, this.#options.retryBaseMs * 2 ** (attempt - 1))
        this.#log.warn({ attempt, err: (err as Error).message, inMs: wait }, 'download broke off; continuing where it stopped')
        await new Promise<void>((resolve) => this.#deps.clock.setTimeout(resolve, wait))
      }
    }
    await syncFile(partial)
    await rename(partial, bundle)
    await syncDirectory(this.#options.dir)
    return bundle
  }

  async #fetch(state: AgentState, from: number, partial: string): Promise<void> {
    const { command } = state
    const headers: Record<string, string> = { authorization: `Bearer ${command.token}` }
    if (from > 0) Object.assign(headers, { range: `bytes=${from}-`, 'if-range': `"${command.sha256}"` })
    const dispatcher = typeof this.#deps.dispatcher === 'function' ? await this.#deps.dispatcher() : this.#deps.dispatcher
    const res = await relayRequest(command.url, { method: 'GET', headers, ...(dispatcher ? { dispatcher } : {}) })
    if (res.statusCode === 401 || res.statusCode === 403 || res.statusCode === 404) {
      const text = await res.body.text().catch(() => '')
      const message = (() => { try { return (JSON.parse(text) as { error?: { message?: string } }).error?.message } catch { return undefined } })()
      throw new UpdateFailure(`the relay refused the download (HTTP ${res.statusCode}${message ? `: ${message}` : ''})`)
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      await res.body.dump()
      throw new Error(`HTTP ${res.statusCode}`)
    }
    const start = res.statusCode === 206 ? from : 0
    if (res.statusCode === 200 && from > 0) this.#log.info('the relay sent the whole bundle again (another bundle or no range support); starting over')
    const length = Number(res.headers['content-length'])
    if (Number.isFinite(length) && start + length !== command.size) {
      await res.body.dump()
      throw new UpdateFailure(`the relay offers ${start + length} bytes but the command said ${command.size}: the release changed; the relay sends the update again`)
    }
    let bytes = start
    const report = () => {
      state.bytes = bytes
      const now = this.#deps.clock.now()
      if (now - this.#lastReport >= this.#options.reportEveryMs) void this.#enter(state, 'downloading', true)
    }
    await pipeline(res.body, async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length
        if (bytes > command.size) throw new UpdateFailure(`the relay sent more than the ${command.size} bytes the command said`)
        report()
        yield chunk
      }
    }, createWriteStream(partial, { flags: start === 0 ? 'w' : 'a' }))
    if (bytes !== command.size) throw new Error(`connection ended after ${bytes} of ${command.size} bytes`)
    state.bytes = bytes
  }

  /**
   * A restart during an install (a power cut) may have cost the bundle's last writes: it is checked again before RAUC
   * reads it. A damaged download is fetched again; a damaged upload has to be uploaded again.
   */
  async #recheckAfterRestart(state: AgentState): Promise<void> {
    const bundle = this.#bundlePath(state.command)
    const damage = await this.#verifyFile(state, bundle).then(() => undefined, (err: unknown) => (err as Error).message)
    if (damage === undefined) return
    await rm(bundle, { force: true })
    if (state.command.token === UPLOAD_TOKEN) throw new UpdateFailure(`the uploaded bundle was damaged when the box restarted during the install (${damage}): upload it again`)
    this.#log.warn({ version: state.command.version, damage }, 'the bundle was damaged by the restart; downloading it again')
    state.state = 'queued'
  }

  async #verifyFile(state: AgentState, bundle: string): Promise<void> {
    const size = await stat(bundle).then((s) => s.size)
    if (size !== state.command.size) throw new UpdateFailure(`the bundle has ${size} bytes, the command said ${state.command.size}`)
    const hash = createHash('sha256')
    await pipeline(createReadStream(bundle), hash)
    const sha = hash.digest('hex')
    if (sha !== state.command.sha256) throw new UpdateFailure(`the bundle's SHA-256 is ${sha}, the command said ${state.command.sha256}: it was damaged or replaced on the way`)
  }

  async #enter(state: AgentState, next: UpdateState, quiet = false): Promise<void> {
    if (this.#stopped && next === 'downloading') return // a stopped agent's stream may still deliver a chunk
    state.state = next
    state.at = this.#deps.clock.now()
    this.#state = state
    await this.#save(state)
    const progress = this.#progress(state)
    this.#lastReport = state.at
    if (!quiet) this.#log.info({ version: state.command.version, state: next, reason: state.reason }, 'update state')
    this.#publish?.(progress)
    for (const listener of this.#listeners) listener(progress)
  }

  /** Writes the state atomically, one write at a time and in order (download reports come from the stream). */
  #save(state: AgentState): Promise<void> {
    const text = JSON.stringify(state)
    const write = async () => {
      const tmp = `${this.#stateFile}.${process.pid}.tmp`
      await writeFile(tmp, text, { mode: 0o600 })
      await rename(tmp, this.#stateFile)
    }
    this.#saving = this.#saving.catch(() => undefined).then(write)
    return this.#saving
  }

  #progress(state: AgentState): UpdateProgressData {
    return {
      updateId: state.command.updateId,
      version: state.command.version,
      state: state.state,
      ...(state.state === 'downloading' ? { bytes: state.bytes ?? 0, total: state.command.size } : {}),
      ...(state.reason !== undefined && (state.state === 'failed' || state.state === 'rolled-back') ? { reason: state.reason } : {}),
      runningVersion: this.#options.runningVersion,
      slot: this.#slot.slice(0, 16),
      at: state.at,
    }
  }
}

import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { canonicalAddress, DEFAULT_NETWORK, needsTrial, normaliseNetworkSettings, renderNetworkFiles, type NetworkSettings } from './network-settings.js'

/** A static setting on probation: kept only if the setup page confirms it from the new address in time. */
export interface NetworkTrial {
  /** Wall-clock ms when the box goes back to `previous` unless confirmed. */
  until: number
  previous: NetworkSettings
}

interface StoredNetwork {
  version: 1
  settings: NetworkSettings
  trial?: NetworkTrial
}

export interface NetworkServiceDeps {
  dataDir: string
  clock: Clock
  logger: Logger
  /** How long a new static setting waits for its confirmation (default 5 minutes). */
  trialMs?: number
}

export const DEFAULT_TRIAL_MS = 5 * 60_000

export class NetworkConfirmError extends Error {
  constructor(readonly code: 'NETWORK_NO_TRIAL' | 'NETWORK_CONFIRM_WRONG_ADDRESS', message: string) {
    super(message)
  }
}

/**
 * The network settings on the data partition (`<dataDir>/network/settings.json`) and their rendered files in
 * `<dataDir>/network/pending/`, which the root-owned pbxgw-network-apply unit validates again and installs (the
 * gateway runs unprivileged and cannot touch /run/systemd/network itself).
 *
 * The trial and its revert live here, with the injected clock, rather than in the apply script: the gateway is
 * the one that sees the confirmation arrive, it already runs for the whole trial, and the timer can be tested
 * without a booted box. The deadline is stored with the settings, so a restart or reboot during the trial does not
 * forget it; a clock that jumped is bounded by never waiting longer than one trial from the start.
 */
export class NetworkService {
  readonly #deps: NetworkServiceDeps
  readonly #log: Logger
  readonly #file: string
  #state: StoredNetwork | undefined
  #timer: ClockTimer | undefined
  #serial = 0
  #queue: Promise<unknown> = Promise.resolve()

  constructor(deps: NetworkServiceDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'network' })
    this.#file = join(deps.dataDir, 'network', 'settings.json')
  }

  get trialMs(): number {
    return this.#deps.trialMs ?? DEFAULT_TRIAL_MS
  }

  get pendingDir(): string {
    return join(this.#deps.dataDir, 'network', 'pending')
  }

  /** Loads the stored settings and arms the revert of a trial left running by a restart. */
  async start(): Promise<void> {
    const state = await this.#load()
    if (state.trial) this.#arm(state.trial)
  }

  stop(): void {
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Resolves once every change under way (a put, a confirm, a revert) is on disk. */
  async idle(): Promise<void> {
    await this.#queue
  }

  async get(): Promise<{ settings: NetworkSettings; trial?: NetworkTrial }> {
    const state = await this.#load()
    return { settings: state.settings, ...(state.trial ? { trial: state.trial } : {}) }
  }

  /** Stores checked settings and asks root to apply them; a change of static address becomes a trial. */
  put(submitted: NetworkSettings): Promise<{ settings: NetworkSettings; trial?: NetworkTrial }> {
    return this.#serialised(async () => {
      const state = await this.#load()
      const settings = normaliseNetworkSettings(submitted)
      // A trial replaced by another keeps the last confirmed setting as the one to return to.
      const confirmed = state.trial ? state.trial.previous : state.settings
      const trial = needsTrial(state.settings, settings) ? { until: this.#deps.clock.now() + this.trialMs, previous: confirmed } : undefined
      await this.#save({ version: 1, settings, ...(trial ? { trial } : {}) })
      this.stop()
      if (trial) this.#arm(trial)
      this.#log.info({ mode: settings.mode, address: settings.address, trialUntil: trial ? new Date(trial.until).toISOString() : undefined }, trial ? 'network setting stored as a trial: it reverts unless confirmed from the new address' : 'network setting stored')
      return { settings, ...(trial ? { trial } : {}) }
    })
  }

  /** Keeps the trial setting. `localAddress`: the box address the confirming request arrived at; `port`: the page's, for the message. */
  confirm(localAddress: string | undefined, port = 443): Promise<NetworkSettings> {
    return this.#serialised(async () => {
      const state = await this.#load()
      if (!state.trial) throw new NetworkConfirmError('NETWORK_NO_TRIAL', 'There is no network change waiting for confirmation: the current setting is kept already.')
      const arrivedAt = canonicalAddress(localAddress ?? '')
      // Only a request that reached the box at its new address proves the new setting works.
      if (arrivedAt !== state.settings.address) {
        throw new NetworkConfirmError('NETWORK_CONFIRM_WRONG_ADDRESS', `Open the setup page at the new address https://${state.settings.address?.includes(':') ? `[${state.settings.address}]` : state.settings.address ?? ''}${port === 443 ? '' : `:${port}`}/ and confirm there: this request came in at ${arrivedAt || 'an unknown address'}, which does not prove the new setting works. Without a confirmation the box goes back to the previous setting by itself.`)
      }
      this.stop()
      await this.#save({ version: 1, settings: state.settings }, false)
      this.#log.info({ address: state.settings.address }, 'network trial confirmed from the new address: kept')
      return state.settings
    })
  }

  /** After a factory reset wiped the data folder: DHCP again, rendered for the apply unit. */
  resetToDefault(): Promise<void> {
    return this.#serialised(async () => {
      this.stop()
      this.#state = undefined
      await this.#save({ version: 1, settings: DEFAULT_NETWORK })
      this.#log.warn('network settings back to DHCP (factory reset)')
    })
  }

  #arm(trial: NetworkTrial): void {
    const wait = Math.min(Math.max(0, trial.until - this.#deps.clock.now()), this.trialMs)
    this.#timer = this.#deps.clock.setTimeout(() => {
      void this.#serialised(async () => {
        const state = await this.#load()
        if (!state.trial) return
        await this.#save({ version: 1, settings: state.trial.previous })
        this.#log.warn({ from: state.settings.address, backTo: state.trial.previous.mode === 'static' ? state.trial.previous.address : 'dhcp' }, 'network trial not confirmed in time: back to the previous setting')
      }).catch((err: unknown) => this.#log.error({ err: (err as Error).message }, 'could not revert the network trial: the box keeps the unconfirmed setting'))
    }, wait)
  }

  #serialised<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn)
    this.#queue = next.catch(() => undefined)
    return next
  }

  async #load(): Promise<StoredNetwork> {
    if (this.#state) return this.#state
    try {
      const parsed = JSON.parse(await readFile(this.#file, 'utf8')) as StoredNetwork
      this.#state = parsed.version === 1 && parsed.settings ? parsed : { version: 1, settings: DEFAULT_NETWORK }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.error({ err: (err as Error).message, file: this.#file }, 'network settings unreadable: using DHCP')
      this.#state = { version: 1, settings: DEFAULT_NETWORK }
    }
    return this.#state
  }

  /** Saves, then (unless only the trial flag changed) renders the files and writes the apply request last. */
  async #save(state: StoredNetwork, render = true): Promise<void> {
    await mkdir(dirname(this.#file), { recursive: true, mode: 0o700 })
    await writeFileAtomic(this.#file, `${JSON.stringify(state, null, 2)}\n`, 0o600)
    this.#state = state
    if (!render) return
    const files = renderNetworkFiles(state.settings)
    for (const [name, text] of Object.entries(files)) {
      const target = join(this.pendingDir, name)
      await mkdir(dirname(target), { recursive: true, mode: 0o755 })
      await writeFileAtomic(target, text, 0o644)
    }
    // The path unit watches this one file: written last, so root never reads a half-written set.
    await writeFileAtomic(join(this.pendingDir, 'apply-request'), `${this.#deps.clock.now()}-${++this.#serial}\n`, 0o644)
  }
}

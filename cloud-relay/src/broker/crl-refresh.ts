import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import type { RelayPki } from '../pki/relay-pki.js'
import { refreshMosquittoCrl, type RevokedCertificate } from './mosquitto-config.js'

const DAY_MS = 86_400_000

export interface MosquittoCrlRefreshOptions {
  configDir: string
  /** Mosquitto's pid_file: after each rewrite it gets SIGHUP, as on a revocation. */
  pidFile?: string | undefined
  /** How often the CRL is rewritten; default daily. */
  intervalMs?: number | undefined
  /** How far ahead each CRL's nextUpdate lies; default 30 days, so a relay down for weeks still leaves a valid CRL. */
  nextUpdateDays?: number | undefined
}

/**
 * Keeps Mosquitto's CRL from expiring. OpenSSL refuses every handshake once the CRL is past its nextUpdate, and
 * the CRL used to be written only at start and on a revocation: after a quiet month no box could connect. It is
 * rewritten at start and then daily with nextUpdate 30 days ahead, and Mosquitto is reloaded to read it.
 */
export class MosquittoCrlRefresh {
  readonly #options: MosquittoCrlRefreshOptions
  readonly #deps: { pki: RelayPki; clock: Clock; logger: Logger; counters: Counters; revokedCertificates: () => readonly RevokedCertificate[] }
  readonly #log: Logger
  #timer: ClockTimer | undefined
  #running: Promise<void> = Promise.resolve()
  #started = false

  constructor(options: MosquittoCrlRefreshOptions, deps: { pki: RelayPki; clock: Clock; logger: Logger; counters: Counters; revokedCertificates: () => readonly RevokedCertificate[] }) {
    this.#options = options
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'mosquitto-crl' })
  }

  /** Rewrites the CRL now, then on the schedule. */
  async start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    this.#run()
    await this.#running
  }

  stop(): void {
    this.#started = false
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Resolves when the rewrite in progress (if any) is done. */
  idle(): Promise<void> {
    return this.#running
  }

  #run(): void {
    this.#running = this.#running.then(() => this.#refresh())
    this.#timer = this.#deps.clock.setTimeout(() => {
      if (this.#started) this.#run()
    }, this.#options.intervalMs ?? DAY_MS)
  }

  async #refresh(): Promise<void> {
    const now = this.#deps.clock.now()
    const nextUpdateDays = this.#options.nextUpdateDays ?? 30
    try {
      const certificates = this.#deps.revokedCertificates()
      const { reloaded } = await refreshMosquittoCrl({ configDir: this.#options.configDir, pidFile: this.#options.pidFile, pki: this.#deps.pki, certificates, now, nextUpdateDays })
      this.#deps.counters.inc('broker.crl_refreshed')
      this.#log.info({ revoked: certificates.length, nextUpdate: new Date(now + nextUpdateDays * DAY_MS).toISOString(), reloaded }, 'Mosquitto CRL refreshed')
    } catch (err) {
      this.#deps.counters.inc('broker.crl_refresh_failed')
      this.#log.error({ configDir: this.#options.configDir, err: (err as Error).message }, 'Mosquitto CRL refresh failed: Mosquitto refuses every box once crl.pem is past its nextUpdate; check the directory and broker.mosquitto.pidFile')
    }
  }
}

import type { Logger } from 'pino'
import { backoffDelay, type Clock, type ClockTimer } from '#kernel/clock.js'
import { BoxEnrollmentError } from './enrollment-client.js'
import type { BoxIdentity, IdentityStore } from './identity-store.js'

/** Timers longer than this are re-armed in steps (setTimeout holds at most ~24.8 days). */
const MAX_TIMER_MS = 24 * 3600_000

export type RenewalStatus =
  | { state: 'not-enrolled' }
  | { state: 'scheduled'; renewAt: string; notAfter: string }
  | { state: 'renewing'; attempt: number }
  | { state: 'retrying'; attempt: number; nextAttemptAt: string; lastError: string }
  /** Revoked, replaced, or expired past the relay's grace: a person must enroll the box again. */
  | { state: 'needs-enrollment'; reason: string }

/** What renewal needs of the enrollment client (EnrollmentClient implements it). */
export interface Renewer {
  renew(): Promise<BoxIdentity>
}

export interface CertificateRenewalDeps {
  store: IdentityStore
  client: Renewer
  clock: Clock
  logger: Logger
  /** Backoff between failed attempts: full jitter from baseMs doubling up to maxMs. Defaults 30 s and 1 h. */
  retry?: { baseMs?: number; maxMs?: number; random?: () => number } | undefined
}

type Listener<T> = (value: T) => void

/**
 * Renews the box's certificate once 2/3 of its lifetime has passed (by the injected clock), retrying with backoff
 * while the relay cannot be reached, and tells the uplink (onRenewed) so it reconnects with the new certificate.
 * A certificate the relay will no longer renew ends in "needs enrollment: get a new code from the console".
 */
export class CertificateRenewal {
  readonly #deps: CertificateRenewalDeps
  readonly #log: Logger
  readonly #renewed = new Set<Listener<BoxIdentity>>()
  readonly #needsEnrollment = new Set<Listener<string>>()
  #status: RenewalStatus = { state: 'not-enrolled' }
  #timer: ClockTimer | undefined
  #attempt = 0
  #running = false
  #inFlight: Promise<BoxIdentity | undefined> | undefined

  constructor(deps: CertificateRenewalDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'renewal' })
  }

  get status(): RenewalStatus {
    return this.#status
  }

  /** Called with the new identity after every successful renewal (reconnect the uplink with it). */
  onRenewed(listener: Listener<BoxIdentity>): () => void {
    this.#renewed.add(listener)
    return () => this.#renewed.delete(listener)
  }

  /** Called once the certificate can no longer be renewed, with the reason in words. */
  onNeedsEnrollment(listener: Listener<string>): () => void {
    this.#needsEnrollment.add(listener)
    return () => this.#needsEnrollment.delete(listener)
  }

  /** Reads the identity and schedules the next renewal. Idempotent; call again after a new enrollment. */
  async start(): Promise<void> {
    this.#running = true
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    const identity = await this.#deps.store.load()
    if (!this.#running) return
    if (!identity) {
      this.#status = { state: 'not-enrolled' }
      this.#log.info('box not enrolled: nothing to renew')
      return
    }
    this.#attempt = 0
    this.#schedule(identity)
  }

  stop(): void {
    this.#running = false
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Renews now (admin action, tests); resolves with the new identity, or undefined when it failed (see status). */
  renewNow(): Promise<BoxIdentity | undefined> {
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#inFlight ??= this.#renew().finally(() => {
      this.#inFlight = undefined
    })
    return this.#inFlight
  }

  #schedule(identity: BoxIdentity): void {
    const renewAt = Date.parse(identity.renewAfter)
    this.#status = { state: 'scheduled', renewAt: identity.renewAfter, notAfter: identity.notAfter }
    this.#log.info({ gatewayId: identity.gatewayId, renewAt: identity.renewAfter, notAfter: identity.notAfter }, 'certificate renewal scheduled')
    this.#arm(renewAt)
  }

  /** Fires renewNow at `at` (clock time), in steps of at most a day. */
  #arm(at: number): void {
    if (!this.#running) return
    const delay = at - this.#deps.clock.now()
    this.#timer = this.#deps.clock.setTimeout(() => {
      this.#timer = undefined
      if (this.#deps.clock.now() >= at) void this.renewNow()
      else this.#arm(at)
    }, Math.max(0, Math.min(delay, MAX_TIMER_MS)))
  }

  async #renew(): Promise<BoxIdentity | undefined> {
    this.#attempt++
    this.#status = { state: 'renewing', attempt: this.#attempt }
    try {
      const identity = await this.#deps.client.renew()
      this.#attempt = 0
      for (const listener of this.#renewed) {
        try {
          listener(identity)
        } catch (err) {
          this.#log.error({ err: (err as Error).message }, 'renewal listener failed')
        }
      }
      if (this.#running) this.#schedule(identity)
      else this.#status = { state: 'scheduled', renewAt: identity.renewAfter, notAfter: identity.notAfter }
      return identity
    } catch (err) {
      const error = err instanceof BoxEnrollmentError ? err : new BoxEnrollmentError('BOX_RENEWAL', (err as Error).message, true)
      if (!error.retryable) {
        const reason = /needs enrollment/.test(error.message) ? error.message : `needs enrollment: get a new code from the console (${error.message})`
        this.#status = { state: 'needs-enrollment', reason }
        this.#log.error({ code: error.code, reason }, 'certificate cannot be renewed')
        for (const listener of this.#needsEnrollment) {
          try {
            listener(reason)
          } catch (listenerErr) {
            this.#log.error({ err: (listenerErr as Error).message }, 'needs-enrollment listener failed')
          }
        }
        return undefined
      }
      const retry = this.#deps.retry ?? {}
      const delay = backoffDelay(this.#attempt - 1, retry.baseMs ?? 30_000, retry.maxMs ?? 3600_000, retry.random)
      const nextAttemptAt = this.#deps.clock.now() + delay
      this.#status = { state: 'retrying', attempt: this.#attempt, nextAttemptAt: new Date(nextAttemptAt).toISOString(), lastError: error.message }
      this.#log.warn({ code: error.code, attempt: this.#attempt, retryInMs: delay, err: error.message }, 'certificate renewal failed; retrying')
      this.#arm(nextAttemptAt)
      return undefined
    }
  }
}

import { randomBytes, X509Certificate } from 'node:crypto'
import type { Logger } from 'pino'
import type { Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { PkiError, type RelayPki } from '../pki/relay-pki.js'
import type { EnrollmentState, EnrollmentStore, GatewayIdentityRow } from '../store/enrollment-store.js'
import { AttemptLimiter } from './attempt-limiter.js'
import { generateCode, hashCode, normaliseCode } from './enrollment-codes.js'

const HOUR_MS = 3600_000
const DAY_MS = 24 * HOUR_MS
const GATEWAY_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
/** A box renews once every 2/3 of its certificate's lifetime and retries a lost answer a few times. */
const DEFAULT_RENEWALS_PER_WINDOW = 10

/** Stable error codes of enrollment and renewal, with their HTTP status. Messages say what to do. */
export const ENROLLMENT_ERROR_STATUS = {
  ENROLL_CODE_UNKNOWN: 401,
  ENROLL_CODE_USED: 409,
  ENROLL_CODE_EXPIRED: 410,
  ENROLL_GATEWAY_REVOKED: 403,
  ENROLL_BAD_CSR: 400,
  ENROLL_RATE_LIMITED: 429,
  RENEW_RATE_LIMITED: 429,
  ENROLL_UNKNOWN_TENANT: 404,
  ENROLL_UNKNOWN_GATEWAY: 404,
  ENROLL_GATEWAY_EXISTS: 409,
  ENROLL_BAD_GATEWAY_ID: 400,
  RENEW_NOT_OURS: 401,
  RENEW_REVOKED: 403,
  RENEW_EXPIRED: 410,
  RENEW_KEY_MISMATCH: 400,
} as const

export type EnrollmentErrorCode = keyof typeof ENROLLMENT_ERROR_STATUS

export class EnrollmentError extends Error {
  readonly statusCode: number
  constructor(readonly code: EnrollmentErrorCode, message: string, readonly retryAfterS?: number) {
    super(message)
    this.name = 'EnrollmentError'
    this.statusCode = ENROLLMENT_ERROR_STATUS[code]
  }
}

export interface EnrollmentSettings {
  codeTtlHours: number
  certificateValidityDays: number
  renewalGraceDays: number
  brokerUrls: readonly string[]
  failedAttemptsPerWindow: number
  failedAttemptsWindowMinutes: number
  /** Renewals per gateway per window (default 10). */
  renewalsPerWindow?: number | undefined
}

/** What a renewal request proved before anything is looked up or signed: a certificate of ours and its key. */
interface RenewalProof {
  gatewayId: string
  serial: string
  publicKeySha256: string
}

export interface EnrollmentServiceDeps {
  store: EnrollmentStore
  pki: RelayPki
  clock: Clock
  logger: Logger
  counters: Counters
  settings: EnrollmentSettings
  /** The relay's event log (optional): enrollments, renewals, revocations in words. */
  appendEvent?: ((entry: { tenantId: string; gatewayId: string; kind: string; message: string; data: Record<string, unknown> }) => Promise<void>) | undefined
}

/** What the admin and the fleet list see of a gateway's identity. */
export interface GatewayIdentity {
  id: string
  tenantId: string
  name: string
  state: EnrollmentState
  certificateSerial: string | null
  notAfter: string | null
  enrolledAt: string | null
  revokedAt: string | null
  revokedReason: string | null
  createdAt: string
}

/** What a box gets on enrollment and renewal. */
export interface IssuedIdentity {
  gatewayId: string
  tenantId: string
  certificatePem: string
  caChainPem: string
  brokerUrls: string[]
  notAfter: string
  renewAfter: string
  serverTime: string
}

export interface CodeIssued {
  gatewayId: string
  /** Shown once, XXXX-XXXX-XXXX-XXXX; only its hash is stored. */
  code: string
  expiresAt: string
}

export interface RevokedGateway {
  gatewayId: string
  tenantId: string
  reason: string
  actor: string
  /** Certificate serials (lower-case hex) revoked now. */
  serials: string[]
}

interface GatewayMemo {
  tenantId: string
  state: EnrollmentState
  current: string | null
  previous: string | null
}

type Listener<T> = (value: T) => void

/**
 * Enrollment and certificate life cycle of gateways (DESIGN §4): the admin creates a gateway and gets a one-time
 * code; the box trades the code and a CSR for its certificate; it renews with the same key; a revocation cuts it
 * off at once. The broker's connect check (isCertificateAllowed) and the CRL (revokedCertificates) answer from
 * memory, kept in step with the store by this service.
 */
export class EnrollmentService {
  readonly #deps: EnrollmentServiceDeps
  readonly #log: Logger
  readonly #gateways = new Map<string, GatewayMemo>()
  #revoked: Array<{ serial: string; revokedAt: Date; notAfter: Date }> = []
  #revokedSerials = new Set<string>()
  /** Failed enrollments per remote address. */
  readonly #enrollFailures: AttemptLimiter
  /** Failed renewals that did not show a certificate of ours and its key, per remote address. */
  readonly #renewFailures: AttemptLimiter
  /** Renewals per gateway, once the request holds the gateway's certificate and key. */
  readonly #renewals: AttemptLimiter
  readonly #revokedListeners = new Set<Listener<RevokedGateway>>()
  readonly #createdListeners = new Set<Listener<GatewayIdentity>>()

  constructor(deps: EnrollmentServiceDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'enrollment' })
    const { settings, clock } = deps
    const windowMs = settings.failedAttemptsWindowMinutes * 60_000
    this.#enrollFailures = new AttemptLimiter({ limit: settings.failedAttemptsPerWindow, windowMs }, clock)
    this.#renewFailures = new AttemptLimiter({ limit: settings.failedAttemptsPerWindow, windowMs }, clock)
    this.#renewals = new AttemptLimiter({ limit: settings.renewalsPerWindow ?? DEFAULT_RENEWALS_PER_WINDOW, windowMs }, clock)
  }

  /** Reads every gateway's enrollment state and the revoked certificates into memory. Call once before use. */
  async load(): Promise<void> {
    this.#gateways.clear()
    for (const row of await this.#deps.store.listGateways()) this.#remember(row)
    await this.#reloadRevoked()
  }

  get caCertPem(): string {
    return this.#deps.pki.caCertPem
  }

  /** Called after a gateway is revoked (the broker disconnects it, Mosquitto's CRL is rewritten). */
  onRevoked(listener: Listener<RevokedGateway>): () => void {
    this.#revokedListeners.add(listener)
    return () => this.#revokedListeners.delete(listener)
  }

  /** Called after a gateway is created through the API (the relay learns its tenant). */
  onGatewayCreated(listener: Listener<GatewayIdentity>): () => void {
    this.#createdListeners.add(listener)
    return () => this.#createdListeners.delete(listener)
  }

  async createGateway(tenantId: string, options: { id?: string | undefined; name?: string | undefined } = {}): Promise<{ gateway: GatewayIdentity } & CodeIssued> {
    const { store, clock } = this.#deps
    if (!(await store.tenantExists(tenantId))) {
      throw new EnrollmentError('ENROLL_UNKNOWN_TENANT', `No tenant "${tenantId}": add it to the relay config (tenants[]) and restart the relay, or use an existing tenant id.`)
    }
    const id = options.id ?? `gw-${randomBytes(5).toString('hex')}`
    if (!GATEWAY_ID.test(id)) {
      throw new EnrollmentError('ENROLL_BAD_GATEWAY_ID', `"${id}" cannot be a gateway id: use 1 to 64 letters, digits, "_", "." or "-", starting with a letter or digit.`)
    }
    const created = await store.createGateway({ id, tenantId, name: options.name ?? '', at: new Date(clock.now()) })
    if (!created) throw new EnrollmentError('ENROLL_GATEWAY_EXISTS', `A gateway "${id}" exists already: choose another id, or create a new enrollment code for it (POST /api/v1/gateways/${id}/enrollment-codes).`)
    const row = await this.#requireGateway(id)
    this.#remember(row)
    const code = await this.newCode(id)
    const gateway = toIdentity(row)
    this.#log.info({ gatewayId: id, tenantId }, 'gateway created')
    await this.#event(tenantId, id, 'gateway.created', `gateway ${id} created for tenant ${tenantId}; an enrollment code valid until ${code.expiresAt} was issued`, {})
    for (const listener of this.#createdListeners) listener(gateway)
    return { gateway, ...code }
  }

  /** A new one-time code; older unused codes of the gateway stop working. Refused for a revoked gateway. */
  async newCode(gatewayId: string): Promise<CodeIssued> {
    const { store, clock, settings } = this.#deps
    const row = await store.getGateway(gatewayId)
    if (!row) throw unknownGateway(gatewayId)
    if (row.state === 'revoked') throw revokedGateway(gatewayId, row.revokedReason)
    const code = generateCode()
    const now = clock.now()
    const expiresAt = new Date(now + settings.codeTtlHours * HOUR_MS)
    const stored = await store.insertCode({ hash: hashCode(normaliseCode(code) ?? code), gatewayId, expiresAt, at: new Date(now) })
    if (!stored) throw revokedGateway(gatewayId, null)
    this.#deps.counters.inc('enrollment.codes_issued')
    this.#log.info({ gatewayId, expiresAt: expiresAt.toISOString() }, 'enrollment code issued')
    return { gatewayId, code, expiresAt: expiresAt.toISOString() }
  }

  /**
   * A box trades a one-time code and its CSR for a certificate. Failures are limited per remote address; the
   * attempt is counted before the code is checked, so parallel guesses cannot all slip under the limit.
   */
  async enroll(request: { code: string; csrPem: string; remoteAddress: string }): Promise<IssuedIdentity> {
    const address = request.remoteAddress
    const taken = this.#enrollFailures.take(address)
    if (!taken.ok) {
      this.#refused({ reason: 'ENROLL_RATE_LIMITED', what: 'enroll', remoteAddress: address, failures: taken.attempts, retryAfterS: taken.retryAfterS })
      throw new EnrollmentError('ENROLL_RATE_LIMITED', `Too many failed attempts from ${address}: wait ${taken.retryAfterS} s and check the code before trying again.`, taken.retryAfterS)
    }
    try {
      const issued = await this.#enroll(request)
      this.#enrollFailures.giveBack(address, taken.token)
      return issued
    } catch (err) {
      if (err instanceof EnrollmentError) this.#refused({ reason: err.code, what: 'enroll', remoteAddress: address })
      else this.#enrollFailures.giveBack(address, taken.token)
      throw err
    }
  }

  /**
   * A box renews with its current (or, if it lost the last answer, previous) certificate and a CSR for the SAME
   * key: the CSR's signature proves it holds that key. An expired certificate renews within the grace.
   *
   * Limits (separate from enrollment's, so an attacker hammering enrollment from the address a fleet shares
   * cannot stop the fleet renewing): a request that shows a certificate of ours and its key counts against
   * that gateway only; one that does not is a failure of its remote address.
   */
  async renew(request: { certificatePem: string; csrPem: string; remoteAddress?: string | undefined }): Promise<IssuedIdentity> {
    const address = request.remoteAddress ?? 'unknown'
    let proof: RenewalProof
    try {
      proof = await this.#proveRenewal(request)
    } catch (err) {
      if (!(err instanceof EnrollmentError)) throw err
      const taken = this.#renewFailures.take(address)
      if (!taken.ok) {
        this.#refused({ reason: 'RENEW_RATE_LIMITED', what: 'renew', remoteAddress: address, failures: taken.attempts, retryAfterS: taken.retryAfterS })
        throw new EnrollmentError('RENEW_RATE_LIMITED', `Too many failed renewals from ${address}: wait ${taken.retryAfterS} s. A box renews with the certificate and key this relay gave it.`, taken.retryAfterS)
      }
      this.#refused({ reason: err.code, what: 'renew', remoteAddress: address })
      throw err
    }
    const taken = this.#renewals.take(proof.gatewayId)
    if (!taken.ok) {
      this.#refused({ reason: 'RENEW_RATE_LIMITED', what: 'renew', gatewayId: proof.gatewayId, remoteAddress: address, renewals: taken.attempts, retryAfterS: taken.retryAfterS })
      throw new EnrollmentError('RENEW_RATE_LIMITED', `Gateway ${proof.gatewayId} asked for ${taken.attempts} certificates within ${this.#deps.settings.failedAttemptsWindowMinutes} minutes: wait ${taken.retryAfterS} s. If the box keeps renewing, check its clock and its stored identity.`, taken.retryAfterS)
    }
    try {
      return await this.#renew(proof, request.csrPem)
    } catch (err) {
      if (err instanceof EnrollmentError) this.#refused({ reason: err.code, what: 'renew', gatewayId: proof.gatewayId, remoteAddress: address })
      throw err
    }
  }

  /** Revokes a gateway for good: codes and certificates stop working, listeners cut it off at once. */
  async revoke(gatewayId: string, reason: string, actor: string): Promise<GatewayIdentity> {
    const { store, clock, counters } = this.#deps
    const at = new Date(clock.now())
    const result = await store.revokeGateway(gatewayId, reason, actor, at)
    if (!result) throw unknownGateway(gatewayId)
    const row = await this.#requireGateway(gatewayId)
    this.#remember(row)
    await this.#reloadRevoked()
    if (!result.already) {
      counters.inc('enrollment.revoked')
      this.#log.warn({ gatewayId, tenantId: result.tenantId, reason, actor, serials: result.revoked }, 'gateway revoked')
      await this.#event(result.tenantId, gatewayId, 'gateway.revoked', `gateway ${gatewayId} revoked by ${actor}: ${reason}`, { reason, actor, serials: result.revoked })
    }
    // Listeners run on every call, so a broker that missed the first one (restarted) still cuts the gateway off.
    const event: RevokedGateway = { gatewayId, tenantId: result.tenantId, reason: row.revokedReason ?? reason, actor: row.revokedBy ?? actor, serials: result.revoked }
    for (const listener of this.#revokedListeners) {
      try {
        listener(event)
      } catch (err) {
        this.#log.error({ gatewayId, err: (err as Error).message }, 'revocation listener failed')
      }
    }
    return toIdentity(row)
  }

  async getGateway(gatewayId: string): Promise<GatewayIdentity | undefined> {
    const row = await this.#deps.store.getGateway(gatewayId)
    return row ? toIdentity(row) : undefined
  }

  async listGateways(tenantId?: string): Promise<GatewayIdentity[]> {
    return (await this.#deps.store.listGateways(tenantId)).map(toIdentity)
  }

  /**
   * The broker's connect check, from memory: the gateway is enrolled and the serial (hex, any case) is its current
   * or previous certificate, not revoked. The TLS layer has already checked the chain and the validity dates.
   */
  isCertificateAllowed(gatewayId: string, serial: string): boolean {
    const memo = this.#gateways.get(gatewayId)
    const s = serial.toLowerCase()
    if (!memo || memo.state !== 'enrolled' || this.#revokedSerials.has(s)) return false
    return s === memo.current || s === memo.previous
  }

  /**
   * The broker's connect decision with the reason in words (logged and counted by the broker): the same rule as
   * isCertificateAllowed, and the tenant comes from here, never from anything the box sends.
   */
  decideCertificate(gatewayId: string, serial: string): { ok: true; tenantId: string } | { ok: false; reason: string } {
    const memo = this.#gateways.get(gatewayId)
    const s = serial.toLowerCase()
    if (!memo) return { ok: false, reason: `no gateway "${gatewayId}" on this relay: create it in the console and enrol the box` }
    if (memo.state === 'revoked' || this.#revokedSerials.has(s)) return { ok: false, reason: `gateway ${gatewayId} or this certificate (serial ${s}) is revoked: create a new gateway or re-enrol with a new code` }
    if (memo.state !== 'enrolled') return { ok: false, reason: `gateway ${gatewayId} is not enrolled yet: enter its code in the box's setup page` }
    if (s !== memo.current && s !== memo.previous) return { ok: false, reason: `certificate serial ${s} is not gateway ${gatewayId}'s current one (superseded by a renewal or a re-enrollment)` }
    return { ok: true, tenantId: memo.tenantId }
  }

  /** Whether the gateway was revoked (its messages are dropped; it cannot connect or enrol with an old code). */
  isRevoked(gatewayId: string): boolean {
    return this.#gateways.get(gatewayId)?.state === 'revoked'
  }

  /** Every revoked gateway's id (for the Mosquitto ACL's deny blocks). */
  revokedGatewayIds(): string[] {
    return [...this.#gateways].filter(([, memo]) => memo.state === 'revoked').map(([id]) => id).sort()
  }

  /** Revoked, unexpired certificates (for Mosquitto's CRL: RelayPki.createCrl). */
  revokedCertificates(): Array<{ serial: string; revokedAt: Date }> {
    const now = this.#deps.clock.now()
    return this.#revoked.filter((r) => r.notAfter.getTime() > now).map((r) => ({ serial: r.serial, revokedAt: r.revokedAt }))
  }

  async #enroll(request: { code: string; csrPem: string; remoteAddress: string }): Promise<IssuedIdentity> {
    const { store, clock, pki, settings, counters } = this.#deps
    const normalised = normaliseCode(request.code)
    if (normalised === undefined) {
      throw new EnrollmentError('ENROLL_CODE_UNKNOWN', 'That is not an enrollment code: codes are 16 letters and digits, shown as XXXX-XXXX-XXXX-XXXX. Copy it again from the console.')
    }
    const hash = hashCode(normalised)
    this.#classify(await store.findCode(hash), clock.now())
    let publicKeySha256: string
    try {
      publicKeySha256 = (await pki.inspectCsr(request.csrPem)).publicKeySha256
    } catch (err) {
      if (err instanceof PkiError) throw new EnrollmentError('ENROLL_BAD_CSR', `${err.message}. The box makes its CSR itself; update the gateway software if this repeats.`)
      throw err
    }
    const now = clock.now()
    const gatewayId = await store.consumeCode(hash, new Date(now))
    if (gatewayId === undefined) {
      // Lost a race (another request spent it, or it was revoked meanwhile): say which.
      this.#classify(await store.findCode(hash), now)
      throw new EnrollmentError('ENROLL_CODE_USED', 'This enrollment code has been used already: create a new code in the console.')
    }
    const issued = await pki.signCsr(request.csrPem, gatewayId, { validityDays: settings.certificateValidityDays, now })
    const recorded = await store.recordEnrollment(gatewayId, { serial: issued.serial, notBefore: issued.notBefore, notAfter: issued.notAfter, publicKeySha256 }, new Date(now))
    if (!recorded) throw revokedGateway(gatewayId, null)
    const row = await this.#requireGateway(gatewayId)
    this.#remember(row)
    if (recorded.revoked.length) await this.#reloadRevoked()
    counters.inc('enrollment.enrolled')
    this.#log.info({ gatewayId, tenantId: row.tenantId, serial: issued.serial, notAfter: issued.notAfter.toISOString(), remoteAddress: request.remoteAddress, replaced: recorded.revoked }, 'gateway enrolled')
    await this.#event(row.tenantId, gatewayId, 'gateway.enrolled', `gateway ${gatewayId} enrolled from ${request.remoteAddress}; certificate ${issued.serial} valid until ${issued.notAfter.toISOString()}`, { serial: issued.serial, replaced: recorded.revoked })
    return this.#answer(row.tenantId, gatewayId, issued, now)
  }

  /** Parses and verifies the certificate (ours, within the grace) and checks the CSR is for its key: CPU only. */
  async #proveRenewal(request: { certificatePem: string; csrPem: string }): Promise<RenewalProof> {
    const { clock, pki, settings } = this.#deps
    const now = clock.now()
    let parsed: X509Certificate
    try {
      parsed = new X509Certificate(request.certificatePem)
    } catch {
      throw new EnrollmentError('RENEW_NOT_OURS', 'The certificate sent is not a PEM certificate: send the box\'s current certificate.')
    }
    const notAfter = Date.parse(parsed.validTo)
    if (now > notAfter + settings.renewalGraceDays * DAY_MS) {
      throw new EnrollmentError('RENEW_EXPIRED', `The certificate expired at ${new Date(notAfter).toISOString()}, more than ${settings.renewalGraceDays} day(s) ago: it can no longer renew. Get a new code from the console and enroll the box again.`)
    }
    let verified
    try {
      // Within the grace an expired certificate still proves who the box is: check it as of its last valid moment.
      verified = pki.verifyClientCertificate(request.certificatePem, Math.min(now, notAfter - 1000))
    } catch (err) {
      if (err instanceof PkiError) throw new EnrollmentError('RENEW_NOT_OURS', `${err.message}: this relay did not issue it. Enroll the box with a code from this relay's console.`)
      throw err
    }
    let csrKey: string
    try {
      csrKey = (await pki.inspectCsr(request.csrPem)).publicKeySha256
    } catch (err) {
      if (err instanceof PkiError) throw new EnrollmentError('ENROLL_BAD_CSR', `${err.message}. The box makes its CSR itself; update the gateway software if this repeats.`)
      throw err
    }
    if (csrKey !== verified.publicKeySha256) {
      throw new EnrollmentError('RENEW_KEY_MISMATCH', 'The CSR is for a different key than the certificate: a renewal keeps the key. To change the key, enroll the box again with a new code.')
    }
    return { gatewayId: verified.commonName, serial: verified.serial, publicKeySha256: csrKey }
  }

  async #renew(proof: RenewalProof, csrPem: string): Promise<IssuedIdentity> {
    const { store, clock, pki, settings, counters } = this.#deps
    const now = clock.now()
    const { gatewayId, serial } = proof
    const row = await store.getGateway(gatewayId)
    if (!row) throw new EnrollmentError('RENEW_NOT_OURS', `The certificate names gateway "${gatewayId}", which this relay does not know: enroll the box with a code from this relay's console.`)
    if (row.state === 'revoked') {
      throw new EnrollmentError('RENEW_REVOKED', `Gateway ${gatewayId} was revoked${row.revokedReason ? ` (${row.revokedReason})` : ''}: it cannot renew. Create a new gateway in the console if the box should come back.`)
    }
    const cert = await store.getCertificate(serial)
    if (!cert || cert.revokedAt !== null || (serial !== row.currentSerial && serial !== row.previousSerial)) {
      throw new EnrollmentError('RENEW_REVOKED', `Certificate ${serial} of gateway ${gatewayId} was replaced or revoked: it cannot renew. Get a new code from the console and enroll the box again.`)
    }
    const issued = await pki.signCsr(csrPem, gatewayId, { validityDays: settings.certificateValidityDays, now })
    const recorded = await store.recordRenewal(gatewayId, serial, { serial: issued.serial, notBefore: issued.notBefore, notAfter: issued.notAfter, publicKeySha256: proof.publicKeySha256 }, new Date(now))
    if (!recorded) {
      throw new EnrollmentError('RENEW_REVOKED', `Gateway ${gatewayId} was revoked or renewed by another request meanwhile: retry once; if it is refused again, enroll the box with a new code.`)
    }
    const fresh = await this.#requireGateway(gatewayId)
    this.#remember(fresh)
    if (recorded.revoked.length) await this.#reloadRevoked()
    counters.inc('enrollment.renewed')
    this.#log.info({ gatewayId, serial: issued.serial, previous: serial, notAfter: issued.notAfter.toISOString() }, 'gateway certificate renewed')
    await this.#event(fresh.tenantId, gatewayId, 'gateway.renewed', `gateway ${gatewayId} renewed its certificate; ${issued.serial} valid until ${issued.notAfter.toISOString()}`, { serial: issued.serial, previous: serial })
    return this.#answer(fresh.tenantId, gatewayId, issued, now)
  }

  /** Throws the right error for a code that cannot be spent; returns when it looks spendable. */
  #classify(code: Awaited<ReturnType<EnrollmentStore['findCode']>>, now: number): void {
    if (!code) throw new EnrollmentError('ENROLL_CODE_UNKNOWN', 'This enrollment code is not known to the relay: check it (16 characters, XXXX-XXXX-XXXX-XXXX) or create a new code in the console.')
    if (code.gatewayState === 'revoked') throw revokedGateway(code.gatewayId, null)
    if (code.usedAt) throw new EnrollmentError('ENROLL_CODE_USED', `This enrollment code was used at ${code.usedAt.toISOString()}: a code works once. Create a new code in the console.`)
    if (code.invalidatedAt) throw new EnrollmentError('ENROLL_CODE_EXPIRED', `This enrollment code was replaced by a newer one at ${code.invalidatedAt.toISOString()}: use the newest code, or create a new code in the console.`)
    if (code.expiresAt.getTime() <= now) throw new EnrollmentError('ENROLL_CODE_EXPIRED', `This enrollment code expired at ${code.expiresAt.toISOString()}: create a new code in the console.`)
  }

  /** Counted and logged with the reason code, never the code or certificate itself. */
  #refused(fields: { reason: string; what: 'enroll' | 'renew'; remoteAddress: string; [key: string]: unknown }): void {
    this.#deps.counters.inc('enrollment.rejected')
    this.#log.warn(fields, 'enrollment request rejected')
  }

  #answer(tenantId: string, gatewayId: string, issued: { certPem: string; notBefore: Date; notAfter: Date }, now: number): IssuedIdentity {
    const lifetime = issued.notAfter.getTime() - issued.notBefore.getTime()
    return {
      gatewayId,
      tenantId,
      certificatePem: issued.certPem,
      caChainPem: this.#deps.pki.caCertPem,
      brokerUrls: [...this.#deps.settings.brokerUrls],
      notAfter: issued.notAfter.toISOString(),
      renewAfter: new Date(issued.notBefore.getTime() + Math.round((lifetime * 2) / 3)).toISOString(),
      serverTime: new Date(now).toISOString(),
    }
  }

  #remember(row: GatewayIdentityRow): void {
    this.#gateways.set(row.id, { tenantId: row.tenantId, state: row.state, current: row.currentSerial, previous: row.previousSerial })
  }

  async #reloadRevoked(): Promise<void> {
    const rows = await this.#deps.store.listRevokedCertificates(new Date(this.#deps.clock.now()))
    this.#revoked = rows.map((r) => ({ serial: r.serial, revokedAt: r.revokedAt ?? new Date(0), notAfter: r.notAfter }))
    this.#revokedSerials = new Set(rows.map((r) => r.serial))
  }

  async #requireGateway(gatewayId: string): Promise<GatewayIdentityRow> {
    const row = await this.#deps.store.getGateway(gatewayId)
    if (!row) throw unknownGateway(gatewayId)
    return row
  }

  async #event(tenantId: string, gatewayId: string, kind: string, message: string, data: Record<string, unknown>): Promise<void> {
    try {
      await this.#deps.appendEvent?.({ tenantId, gatewayId, kind, message, data })
    } catch (err) {
      this.#log.warn({ gatewayId, kind, err: (err as Error).message }, 'event log write failed')
    }
  }
}

function unknownGateway(gatewayId: string): EnrollmentError {
  return new EnrollmentError('ENROLL_UNKNOWN_GATEWAY', `No gateway "${gatewayId}": create it first (POST /api/v1/tenants/{tenant}/gateways).`)
}

function revokedGateway(gatewayId: string, reason: string | null): EnrollmentError {
  return new EnrollmentError('ENROLL_GATEWAY_REVOKED', `Gateway ${gatewayId} was revoked${reason ? ` (${reason})` : ''}: it cannot enroll or get codes. Create a new gateway in the console if the box should come back.`)
}

function toIdentity(row: GatewayIdentityRow): GatewayIdentity {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    state: row.state,
    certificateSerial: row.currentSerial,
    notAfter: row.notAfter?.toISOString() ?? null,
    enrolledAt: row.enrolledAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    revokedReason: row.revokedReason,
    createdAt: row.createdAt.toISOString(),
  }
}

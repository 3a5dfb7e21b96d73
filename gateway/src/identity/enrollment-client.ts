import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import type { Clock } from '#kernel/clock.js'
import { createBoxCsr } from './box-csr.js'
import type { BoxIdentity, IdentityStore, IssuedIdentity } from './identity-store.js'
import { createRelayDispatcher, discoverPinnedAnchor, normalisePin, relayRequest, TrustError, type RelayTrust } from './relay-trust.js'

/** Beyond this difference between the box clock and the relay's, certificates will fail: the box says so. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000

export interface RelayConnectionOptions {
  /** https URL of the relay (config relay.enrollUrl); enroll() may override it. */
  relayUrl?: string | undefined
  /** PEM file of a CA to trust besides the system's (config relay.caFile). */
  caFile?: string | undefined
  /** SHA-256 fingerprint of the relay's CA or server certificate, from the console (config relay.caFingerprint). */
  caFingerprint?: string | undefined
  /** HTTP proxy for sites that only allow HTTPS out through one (config relay.proxyUrl). */
  proxyUrl?: string | undefined
  timeoutMs?: number | undefined
}

/** Every way enrollment or renewal can fail, each with a message that says what to do. */
export class BoxEnrollmentError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** true: trying again later may work (network, relay busy); false: a person must act. */
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message)
    this.name = 'BoxEnrollmentError'
  }
}

/** The box-side words for each relay error code; the relay's own message follows. */
const RELAY_CODES: Record<string, { words: string; retryable: boolean }> = {
  ENROLL_CODE_UNKNOWN: { words: 'the relay does not know this enrollment code (mistyped, or made on another relay)', retryable: false },
  ENROLL_CODE_USED: { words: 'this enrollment code has been used already; a code works once: create a new code in the console', retryable: false },
  ENROLL_CODE_EXPIRED: { words: 'this enrollment code has expired or was replaced: create a new code in the console', retryable: false },
  ENROLL_GATEWAY_REVOKED: { words: 'the gateway this code belongs to was revoked: create a new gateway in the console', retryable: false },
  ENROLL_BAD_CSR: { words: 'the relay could not read the box\'s certificate request', retryable: false },
  ENROLL_RATE_LIMITED: { words: 'too many failed attempts from this address: wait and check the code', retryable: true },
  RENEW_NOT_OURS: { words: 'the relay did not issue this box\'s certificate: needs enrollment: get a new code from the console', retryable: false },
  RENEW_REVOKED: { words: 'the box\'s certificate was revoked or replaced: needs enrollment: get a new code from the console', retryable: false },
  RENEW_EXPIRED: { words: 'the box\'s certificate expired too long ago to renew: needs enrollment: get a new code from the console', retryable: false },
  RENEW_KEY_MISMATCH: { words: 'the renewal request was not for the box\'s own key: needs enrollment: get a new code from the console', retryable: false },
  RENEW_RATE_LIMITED: { words: 'the relay is pacing renewals: the box tries again later', retryable: true },
}

const TLS_UNKNOWN_CA = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_UNTRUSTED'])
const TLS_DATES = new Set(['CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED'])

/** "2.5 h", "24 h", "0.1 h" */
function hours(ms: number): string {
  const h = Math.abs(ms) / 3600_000
  return `${h >= 10 ? Math.round(h) : Math.round(h * 10) / 10} h`
}

export function clockSkewMessage(skewMs: number): string {
  const direction = skewMs < 0 ? 'behind' : 'ahead of'
  return `the box clock is ${hours(skewMs)} ${direction} the relay; TLS certificates will fail: enable NTP (timedatectl set-ntp true) or set the time`
}

/**
 * The box's side of enrollment: trade a one-time code and a CSR for a certificate (enroll), and renew it with
 * the same key (renew). HTTPS to the relay with undici, trusting the system CAs, relay.caFile, a pinned
 * fingerprint, and after enrollment the relay's CA; through relay.proxyUrl when set.
 */
export class EnrollmentClient {
  readonly #store: IdentityStore
  readonly #clock: Clock
  readonly #log: Logger
  readonly #options: RelayConnectionOptions

  constructor(deps: { store: IdentityStore; clock: Clock; logger: Logger }, options: RelayConnectionOptions = {}) {
    this.#store = deps.store
    this.#clock = deps.clock
    this.#log = deps.logger.child({ component: 'enrollment' })
    this.#options = options
  }

  /** Enrolls the box: checks the clock against the relay first (so a wrong clock does not burn the code), then spends the code. */
  async enroll(request: { code: string; relayUrl?: string | undefined }): Promise<BoxIdentity> {
    const relayUrl = checkRelayUrl(request.relayUrl ?? this.#options.relayUrl)
    const trust = await this.#trust([])
    const anchors = trust.pin !== undefined ? await this.#discover(relayUrl, trust) : []
    const dispatcher = await createRelayDispatcher(trust, anchors, { timeoutMs: this.#options.timeoutMs })
    try {
      await this.#checkClock(relayUrl, dispatcher, trust)
      const keyPem = await this.#store.ensureKey()
      const csrPem = await createBoxCsr(keyPem, 'pbx-presence-gateway')
      const issued = await this.#post(relayUrl, '/enroll/v1/enroll', { code: request.code, csrPem }, dispatcher, trust)
      const identity = await this.#store.save(issued, relayUrl, new Date(this.#clock.now()).toISOString())
      this.#log.info({ gatewayId: identity.gatewayId, tenantId: identity.tenantId, notAfter: identity.notAfter, renewAfter: identity.renewAfter }, 'box enrolled')
      return identity
    } finally {
      await dispatcher.close().catch(() => undefined)
    }
  }

  /** Renews the certificate with the same key; the relay CA from enrollment is trusted besides the system's. */
  async renew(): Promise<BoxIdentity> {
    const current = await this.#store.load()
    if (!current) throw new BoxEnrollmentError('BOX_NOT_ENROLLED', 'the box is not enrolled: needs enrollment: get a new code from the console', false)
    const relayUrl = checkRelayUrl(this.#options.relayUrl ?? current.relayUrl)
    // After enrollment the relay CA is known; the installer's pin was only the bootstrap (a pinned server
    // certificate changes when the relay renews it).
    const trust: RelayTrust = { ...(await this.#trust([current.caPem])), pin: undefined }
    const dispatcher = await createRelayDispatcher(trust, [], { timeoutMs: this.#options.timeoutMs })
    try {
      const csrPem = await createBoxCsr(current.keyPem, current.gatewayId)
      const issued = await this.#post(relayUrl, '/enroll/v1/renew', { certificatePem: current.certPem, csrPem }, dispatcher, trust)
      if (issued.gatewayId !== current.gatewayId) {
        throw new BoxEnrollmentError('BOX_HTTP', `the relay renewed the certificate for ${issued.gatewayId}, not ${current.gatewayId}: report this to the relay's operator`, false)
      }
      const identity = await this.#store.save(issued, current.relayUrl, current.enrolledAt)
      this.#log.info({ gatewayId: identity.gatewayId, notAfter: identity.notAfter, renewAfter: identity.renewAfter }, 'certificate renewed')
      return identity
    } finally {
      await dispatcher.close().catch(() => undefined)
    }
  }

  async #trust(extra: string[]): Promise<RelayTrust> {
    const caPems = [...extra]
    if (this.#options.caFile) {
      try {
        caPems.push(await readFile(this.#options.caFile, 'utf8'))
      } catch (err) {
        throw new BoxEnrollmentError('BOX_CA_FILE', `cannot read relay.caFile ${this.#options.caFile}: ${(err as Error).message}. Fix the path or remove the setting.`, false)
      }
    }
    let pin: string | undefined
    if (this.#options.caFingerprint !== undefined && this.#options.caFingerprint.trim() !== '') {
      pin = normalisePin(this.#options.caFingerprint)
      if (pin === undefined) throw new BoxEnrollmentError('BOX_BAD_PIN', `relay.caFingerprint "${this.#options.caFingerprint}" is not a SHA-256 fingerprint: copy the 64 hex digits (colons allowed) from the console.`, false)
    }
    return { caPems, pin, proxyUrl: this.#options.proxyUrl }
  }

  async #discover(relayUrl: string, trust: RelayTrust): Promise<string[]> {
    try {
      return [await discoverPinnedAnchor(relayUrl, trust, this.#options.timeoutMs)]
    } catch (err) {
      throw this.#describe(err, relayUrl)
    }
  }

  /** Compares the box clock with the relay's before anything is spent. */
  async #checkClock(relayUrl: string, dispatcher: Dispatcher, trust: RelayTrust): Promise<void> {
    const before = this.#clock.now()
    let relayNow: number | undefined
    try {
      const res = await relayRequest(new URL('/enroll/v1/time', relayUrl), { method: 'GET', dispatcher })
      const body = (await res.body.json().catch(() => undefined)) as { serverTime?: unknown } | undefined
      relayNow = relayTime(typeof body?.serverTime === 'string' ? body.serverTime : undefined, res.headers.date)
    } catch (err) {
      throw await this.#describeWithClock(err, relayUrl, trust)
    }
    if (relayNow === undefined) return
    const skew = before - relayNow
    if (Math.abs(skew) > MAX_CLOCK_SKEW_MS) throw new BoxEnrollmentError('BOX_CLOCK_SKEW', clockSkewMessage(skew), true)
  }

  async #post(relayUrl: string, path: string, body: unknown, dispatcher: Dispatcher, trust: RelayTrust): Promise<IssuedIdentity> {
    let res: Dispatcher.ResponseData
    try {
      res = await relayRequest(new URL(path, relayUrl), { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    } catch (err) {
      throw await this.#describeWithClock(err, relayUrl, trust)
    }
    const text = await res.body.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new BoxEnrollmentError('BOX_HTTP', `the relay answered HTTP ${res.statusCode} without JSON at ${path}: is ${relayUrl} the relay (relay.enrollUrl)? A proxy or captive portal may be answering instead.`, res.statusCode >= 500, res.statusCode)
    }
    if (res.statusCode !== 200) {
      const error = (json as { error?: { code?: unknown; message?: unknown } }).error
      const code = typeof error?.code === 'string' ? error.code : 'BOX_HTTP'
      const message = typeof error?.message === 'string' ? error.message : text.slice(0, 200)
      const known = RELAY_CODES[code]
      const retryAfter = res.headers['retry-after']
      const wait = res.statusCode === 429 && retryAfter !== undefined ? ` (retry after ${String(retryAfter)} s)` : ''
      throw new BoxEnrollmentError(code, known ? `${known.words}${wait}. The relay said: ${message}` : `the relay refused (HTTP ${res.statusCode} ${code}): ${message}`, known?.retryable ?? (res.statusCode >= 500 || res.statusCode === 429), res.statusCode)
    }
    const issued = parseIssued(json)
    if (!issued) throw new BoxEnrollmentError('BOX_HTTP', `the relay's answer at ${path} is not an enrollment answer: update the gateway software or check relay.enrollUrl.`, false, res.statusCode)
    const skew = this.#clock.now() - Date.parse(issued.serverTime)
    if (Math.abs(skew) > MAX_CLOCK_SKEW_MS) this.#log.warn({ skewMs: skew }, clockSkewMessage(skew))
    return issued
  }

  /** A transport error in words; for certificate date errors, reads the relay's clock (unverified, nothing sent) to say how far off the box is. */
  async #describeWithClock(err: unknown, relayUrl: string, trust: RelayTrust): Promise<BoxEnrollmentError> {
    const code = errorCode(err)
    if (code !== undefined && TLS_DATES.has(code)) {
      const probe = await createRelayDispatcher(trust, [], { insecure: true, timeoutMs: this.#options.timeoutMs })
      try {
        const res = await relayRequest(new URL('/enroll/v1/time', relayUrl), { method: 'GET', dispatcher: probe })
        const body = (await res.body.json().catch(() => undefined)) as { serverTime?: unknown } | undefined
        const relayNow = relayTime(typeof body?.serverTime === 'string' ? body.serverTime : undefined, res.headers.date)
        if (relayNow !== undefined) {
          const skew = this.#clock.now() - relayNow
          if (Math.abs(skew) > MAX_CLOCK_SKEW_MS) return new BoxEnrollmentError('BOX_CLOCK_SKEW', clockSkewMessage(skew), true)
        }
      } catch {
        // The plain description below still applies.
      } finally {
        await probe.close().catch(() => undefined)
      }
    }
    return this.#describe(err, relayUrl)
  }

  #describe(err: unknown, relayUrl: string): BoxEnrollmentError {
    if (err instanceof BoxEnrollmentError) return err
    const host = new URL(relayUrl).host
    if (err instanceof TrustError) return new BoxEnrollmentError(err.code, err.message, err.code === 'BOX_PROXY')
    const code = errorCode(err)
    const detail = (err as Error).message
    if (code === 'BOX_TLS_PIN_MISMATCH') {
      return new BoxEnrollmentError(code, `the relay at ${host} did not present the certificate relay.caFingerprint names: copy the pin again from the console, or remove a TLS-inspecting proxy from the path.`, false)
    }
    if (code !== undefined && TLS_UNKNOWN_CA.has(code)) {
      return new BoxEnrollmentError('BOX_TLS_UNKNOWN_CA', `the relay at ${host} presented a certificate from a CA the box does not trust (${code}): set relay.caFingerprint to the pin shown in the console (or relay.caFile to the relay's CA).`, false)
    }
    if (code !== undefined && TLS_DATES.has(code)) {
      return new BoxEnrollmentError('BOX_TLS_DATES', `the relay's certificate is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not yet valid'} by the box clock (${new Date(this.#clock.now()).toISOString()}): if the box clock is wrong, enable NTP (timedatectl set-ntp true) or set the time; otherwise the relay's operator must renew its certificate.`, true)
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return new BoxEnrollmentError('BOX_TLS_HOSTNAME', `the relay's certificate is not for ${new URL(relayUrl).hostname}: use the relay address shown in the console for relay.enrollUrl (${detail}).`, false)
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      return new BoxEnrollmentError('BOX_DNS', `cannot resolve ${new URL(relayUrl).hostname} (${code}): check relay.enrollUrl and the box's DNS server (resolvectl status).`, true)
    }
    if (code === 'ECONNREFUSED') {
      return new BoxEnrollmentError('BOX_REFUSED', `${host} refused the connection: check relay.enrollUrl (host and port) and that outbound HTTPS to it is allowed${this.#options.proxyUrl ? ` through the proxy ${new URL(this.#options.proxyUrl).host}` : ''}.`, true)
    }
    if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return new BoxEnrollmentError('BOX_TIMEOUT', `no answer from ${host} in time: check that the site's firewall allows outbound HTTPS to it, or set relay.proxyUrl.`, true)
    }
    if (code === 'UND_ERR_ABORTED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
      return new BoxEnrollmentError('BOX_NETWORK', `the connection to ${host} broke (${code}): try again; if it repeats, a firewall may be cutting HTTPS to the relay.`, true)
    }
    if (this.#options.proxyUrl && /proxy/i.test(detail)) {
      return new BoxEnrollmentError('BOX_PROXY', `the proxy ${new URL(this.#options.proxyUrl).host} failed: ${detail}. Check relay.proxyUrl.`, true)
    }
    return new BoxEnrollmentError('BOX_NETWORK', `cannot reach the relay at ${host}: ${detail}${code ? ` (${code})` : ''}.`, true)
  }
}

function checkRelayUrl(url: string | undefined): string {
  if (url === undefined || url.trim() === '') {
    throw new BoxEnrollmentError('BOX_BAD_URL', 'no relay address: pass --relay https://… or set relay.enrollUrl in the config (the console shows it).', false)
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new BoxEnrollmentError('BOX_BAD_URL', `"${url}" is not a URL: use the https address of the relay shown in the console.`, false)
  }
  if (parsed.protocol !== 'https:') throw new BoxEnrollmentError('BOX_BAD_URL', `the relay address must be https:// (got ${parsed.protocol}): enrollment sends the code only over TLS.`, false)
  return parsed.origin
}

/** The most telling error code along the error and its causes (undici wraps some socket errors). */
function errorCode(err: unknown): string | undefined {
  const codes: string[] = []
  let e: unknown = err
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') codes.push(code)
    e = (e as { cause?: unknown }).cause
  }
  return codes.find((c) => TLS_UNKNOWN_CA.has(c) || TLS_DATES.has(c) || !c.startsWith('UND_ERR')) ?? codes[0]
}

function relayTime(serverTime: string | undefined, dateHeader: string | string[] | undefined): number | undefined {
  const fromBody = serverTime === undefined ? NaN : Date.parse(serverTime)
  if (Number.isFinite(fromBody)) return fromBody
  const header = Array.isArray(dateHeader) ? dateHeader[0] : dateHeader
  const fromHeader = header === undefined ? NaN : Date.parse(header)
  return Number.isFinite(fromHeader) ? fromHeader : undefined
}

function parseIssued(value: unknown): IssuedIdentity | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const v = value as Record<string, unknown>
  const strings = ['gatewayId', 'tenantId', 'certificatePem', 'caChainPem', 'notAfter', 'renewAfter', 'serverTime'] as const
  if (!strings.every((k) => typeof v[k] === 'string')) return undefined
  if (!Array.isArray(v.brokerUrls) || !v.brokerUrls.every((u) => typeof u === 'string')) return undefined
  return {
    gatewayId: v.gatewayId as string,
    tenantId: v.tenantId as string,
    certificatePem: v.certificatePem as string,
    caChainPem: v.caChainPem as string,
    brokerUrls: v.brokerUrls as string[],
    notAfter: v.notAfter as string,
    renewAfter: v.renewAfter as string,
    serverTime: v.serverTime as string,
  }
}

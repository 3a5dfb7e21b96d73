import { createHmac, timingSafeEqual } from 'node:crypto'

export type TokenCheck = { ok: true; gatewayId: string; expiresAt: number } | { ok: false; why: string }

/**
 * Short-lived download tokens: `<gatewayId, base64url>.<expiry, ms base 36>.<HMAC-SHA256 over gateway, version and
 * expiry>`. The relay puts one in each cmd/update; the command reaches only that box, over its mutual-TLS MQTT
 * session, so the token proves the same identity the certificate does, for one version and a few hours, and works
 * through a TLS-terminating proxy in front of the relay's HTTPS port (where a client certificate would not arrive).
 */
export class DownloadTokens {
  readonly #key: Buffer
  readonly #ttlMs: number

  constructor(key: Buffer, ttlMs: number) {
    if (key.length < 32) throw new Error('a download token key needs at least 32 bytes')
    this.#key = Buffer.from(key)
    this.#ttlMs = ttlMs
  }

  issue(gatewayId: string, version: string, now: number): string {
    const expiry = (now + this.#ttlMs).toString(36)
    const who = Buffer.from(gatewayId, 'utf8').toString('base64url')
    return `${who}.${expiry}.${this.#mac(gatewayId, version, expiry)}`
  }

  /** Whether `token` lets a gateway fetch `version` at `now`, and which gateway. */
  verify(token: string, version: string, now: number): TokenCheck {
    const parts = token.split('.')
    if (parts.length !== 3) return { ok: false, why: 'the token is not a download token' }
    const [who, expiry, mac] = parts as [string, string, string]
    const gatewayId = Buffer.from(who, 'base64url').toString('utf8')
    const expected = Buffer.from(this.#mac(gatewayId, version, expiry))
    const given = Buffer.from(mac)
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, why: 'the token is not valid for this version' }
    const expiresAt = parseInt(expiry, 36)
    if (!Number.isFinite(expiresAt) || expiresAt <= now) return { ok: false, why: 'the token has expired' }
    return { ok: true, gatewayId, expiresAt }
  }

  #mac(gatewayId: string, version: string, expiry: string): string {
    return createHmac('sha256', this.#key).update(`pbxgw-update\n${gatewayId}\n${version}\n${expiry}`).digest('base64url')
  }
}

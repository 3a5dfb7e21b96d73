/**
 * Device authorization grant (RFC 8628) as Entra ID runs it: the app asks /devicecode for a code pair, the
 * person enters the user code at the verification page, the app polls /token until the sign-in is approved,
 * declined or expired. Here "the person" is a test or the CLI calling approve()/decline().
 * Times are simulator-clock epoch ms, so tests can expire a code with advance().
 */
import { randomBytes } from 'node:crypto'

export interface DeviceCodeGrant {
  deviceCode: string
  userCode: string
  clientId: string
  /** Scopes as requested (short Graph names, OIDC scopes removed). */
  scopes: readonly string[]
  expiresAt: number
  state: 'pending' | 'approved' | 'declined' | 'redeemed'
  userId: string | undefined
}

export type DeviceCodePoll =
  | { outcome: 'pending' | 'declined' | 'expired' | 'unknown' | 'redeemed' | 'wrong-client' }
  | { outcome: 'approved'; grant: DeviceCodeGrant }

// Entra's user codes are 9 characters from an alphabet without look-alikes (assumption: the exact alphabet).
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ23456789'

export class DeviceCodeStore {
  private readonly byDeviceCode = new Map<string, DeviceCodeGrant>()
  private readonly byUserCode = new Map<string, DeviceCodeGrant>()

  create(clientId: string, scopes: readonly string[], nowMs: number, lifetimeMs: number): DeviceCodeGrant {
    this.prune(nowMs)
    const grant: DeviceCodeGrant = {
      deviceCode: `sim-dc.${randomBytes(32).toString('base64url')}`,
      userCode: this.newUserCode(),
      clientId,
      scopes,
      expiresAt: nowMs + lifetimeMs,
      state: 'pending',
      userId: undefined,
    }
    this.byDeviceCode.set(grant.deviceCode, grant)
    this.byUserCode.set(grant.userCode, grant)
    return grant
  }

  /** The person signs in as `userId` and accepts. Throws when the code is unknown, used or expired. */
  approve(userCode: string, userId: string, nowMs: number): DeviceCodeGrant {
    const grant = this.pendingByUserCode(userCode, nowMs)
    grant.state = 'approved'
    grant.userId = userId
    return grant
  }

  decline(userCode: string, nowMs: number): DeviceCodeGrant {
    const grant = this.pendingByUserCode(userCode, nowMs)
    grant.state = 'declined'
    return grant
  }

  /** One poll of the token endpoint. An approved grant is redeemed once; later polls see 'redeemed'. */
  poll(deviceCode: string, clientId: string, nowMs: number): DeviceCodePoll {
    const grant = this.byDeviceCode.get(deviceCode)
    if (grant === undefined) return { outcome: 'unknown' }
    if (grant.clientId !== clientId) return { outcome: 'wrong-client' }
    if (grant.state === 'redeemed') return { outcome: 'redeemed' }
    if (nowMs >= grant.expiresAt) return { outcome: 'expired' }
    if (grant.state === 'declined') return { outcome: 'declined' }
    if (grant.state === 'pending') return { outcome: 'pending' }
    grant.state = 'redeemed'
    return { outcome: 'approved', grant }
  }

  /** Codes waiting for the person, newest last (for the CLI and tests). */
  pending(nowMs: number): DeviceCodeGrant[] {
    return [...this.byDeviceCode.values()].filter((g) => g.state === 'pending' && nowMs < g.expiresAt)
  }

  private pendingByUserCode(userCode: string, nowMs: number): DeviceCodeGrant {
    const grant = this.byUserCode.get(userCode.trim().toUpperCase())
    if (grant === undefined) throw new Error(`unknown device user code ${userCode}`)
    if (nowMs >= grant.expiresAt) throw new Error(`device user code ${userCode} has expired`)
    if (grant.state !== 'pending') throw new Error(`device user code ${userCode} is already ${grant.state}`)
    return grant
  }

  private newUserCode(): string {
    for (;;) {
      const bytes = randomBytes(9)
      const code = [...bytes].map((b) => USER_CODE_ALPHABET[b % USER_CODE_ALPHABET.length] ?? 'B').join('')
      if (!this.byUserCode.has(code)) return code
    }
  }

  /** Forgets codes expired for more than a day, so a long run does not grow without bound. */
  private prune(nowMs: number): void {
    for (const grant of this.byDeviceCode.values()) {
      if (nowMs - grant.expiresAt > 86_400_000) {
        this.byDeviceCode.delete(grant.deviceCode)
        this.byUserCode.delete(grant.userCode)
      }
    }
  }
}

import { createPrivateKey, type KeyObject } from 'node:crypto'
import type { Logger } from 'pino'
import type { Clock } from '#kernel/clock.js'
import type { Sealer } from '../secrets/sealer.js'
import type { SubscriptionStore } from '../store/subscription-store.js'
import { certificateBase64, createNotificationCertificate } from './notification-crypto.js'

const KEY_PURPOSE = 'notification certificate key'
/** A new certificate is made when the newest one has less than this left; older ones stay for in-flight items. */
const ROTATE_BEFORE_MS = 30 * 86_400_000

/**
 * The certificate Graph encrypts resource data with: made on first use, its private key sealed in the store,
 * rotated a month before it expires. Keys of older certificates are kept so notifications for subscriptions
 * created with them still decrypt until those subscriptions are renewed onto the new one.
 */
export class CertificateKeeper {
  readonly #deps: { store: SubscriptionStore; sealer: Sealer; clock: Clock; logger: Logger }
  readonly #keys = new Map<string, KeyObject>()
  #current: { id: string; base64: string; notAfter: number } | undefined

  constructor(deps: { store: SubscriptionStore; sealer: Sealer; clock: Clock; logger: Logger }) {
    this.#deps = deps
  }

  async load(): Promise<void> {
    for (const row of await this.#deps.store.listCertificates()) {
      this.#keys.set(row.id, createPrivateKey(this.#deps.sealer.openText(row.privateKey, KEY_PURPOSE)))
      if (this.#current === undefined || row.notAfter.getTime() > this.#current.notAfter) {
        this.#current = { id: row.id, base64: certificateBase64(row.certificatePem), notAfter: row.notAfter.getTime() }
      }
    }
  }

  /** The certificate to put in a new or renewed subscription. */
  async current(): Promise<{ id: string; base64: string }> {
    const now = this.#deps.clock.now()
    if (this.#current === undefined || this.#current.notAfter - now < ROTATE_BEFORE_MS) {
      const cert = createNotificationCertificate(now)
      await this.#deps.store.insertCertificate({
        id: cert.id,
        certificatePem: cert.certificatePem,
        privateKey: this.#deps.sealer.seal(cert.privateKeyPem, KEY_PURPOSE),
        notAfter: cert.notAfter,
      })
      this.#keys.set(cert.id, createPrivateKey(cert.privateKeyPem))
      this.#current = { id: cert.id, base64: certificateBase64(cert.certificatePem), notAfter: cert.notAfter.getTime() }
      this.#deps.logger.info({ certificateId: cert.id, notAfter: cert.notAfter.toISOString() }, 'notification encryption certificate created')
    }
    return { id: this.#current.id, base64: this.#current.base64 }
  }

  keyFor(certificateId: string): KeyObject | undefined {
    return this.#keys.get(certificateId)
  }
}

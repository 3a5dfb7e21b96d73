import { X509Certificate } from 'node:crypto'
import type { Clock } from '#kernel/clock.js'
import { commonNameOf, type IssuedCertificate, type RelayPki } from '../pki/relay-pki.js'
import { RELAY_CN_PREFIX, type RelayCertificateDecision, type RelayCertificateIdentity } from './peer-identity.js'

interface Known {
  serial: string
  notAfter: Date
}

/**
 * The relay's own client certificates (CN `relay:<name>`: full access to the bus) and which of them are current.
 * They get the same checks as a gateway's: one current serial per name, issuing a new one supersedes the old,
 * and superseded or revoked ones are refused by the embedded broker and listed in Mosquitto's CRL.
 * Certificates issued in this process are the only current ones: after a restart the relay issues new ones.
 */
export class RelayCertificates {
  readonly #pki: RelayPki
  readonly #clock: Clock
  readonly #current = new Map<string, Known>()
  readonly #revoked = new Map<string, { revokedAt: Date; notAfter: Date; why: 'superseded' | 'revoked' }>()

  constructor(deps: { pki: RelayPki; clock: Clock }) {
    this.#pki = deps.pki
    this.#clock = deps.clock
  }

  /** Issues `relay:<name>` with a fresh key; the name's previous certificate is superseded. */
  async issue(name: string, options: { validityDays?: number } = {}): Promise<IssuedCertificate & { keyPem: string; commonName: string }> {
    const commonName = `${RELAY_CN_PREFIX}${name}`
    const issued = await this.#pki.issueClientCertificate(commonName, { now: this.#clock.now(), ...options })
    this.#makeCurrent(commonName, { serial: issued.serial, notAfter: issued.notAfter })
    return { ...issued, commonName }
  }

  /** An existing certificate (Mosquitto's relay.pem) becomes its name's current one. */
  adopt(certPem: string): void {
    const cert = new X509Certificate(certPem)
    const commonName = commonNameOf(cert.subject)
    if (!commonName.startsWith(RELAY_CN_PREFIX)) throw new Error(`certificate CN "${commonName}" is not a relay certificate (relay:<name>)`)
    this.#makeCurrent(commonName, { serial: cert.serialNumber.toLowerCase(), notAfter: new Date(cert.validTo) })
  }

  revoke(serial: string, _reason: string): void {
    const s = serial.toLowerCase()
    for (const [name, known] of this.#current) {
      if (known.serial !== s) continue
      this.#current.delete(name)
      this.#revoked.set(s, { revokedAt: new Date(this.#clock.now()), notAfter: known.notAfter, why: 'revoked' })
    }
  }

  /** The broker's connect decision for a relay certificate whose chain and dates the TLS layer already checked. */
  decide(identity: RelayCertificateIdentity): RelayCertificateDecision {
    const s = identity.serial.toLowerCase()
    const gone = this.#revoked.get(s)
    if (gone) return { ok: false, reason: `relay certificate ${s} (${identity.commonName}) was ${gone.why === 'superseded' ? 'superseded by a newer one' : 'revoked'}` }
    const current = this.#current.get(identity.commonName)
    if (!current) return { ok: false, reason: `no current certificate for ${identity.commonName} on this relay: relay certificates are issued by the relay itself` }
    if (current.serial !== s) return { ok: false, reason: `relay certificate ${s} is not the current one for ${identity.commonName}` }
    return { ok: true }
  }

  /** Superseded and revoked relay certificates that have not expired, for the CRL. */
  revokedCertificates(): Array<{ serial: string; revokedAt: Date }> {
    const now = this.#clock.now()
    return [...this.#revoked].filter(([, r]) => r.notAfter.getTime() > now).map(([serial, r]) => ({ serial, revokedAt: r.revokedAt }))
  }

  #makeCurrent(commonName: string, known: Known): void {
    const previous = this.#current.get(commonName)
    if (previous && previous.serial !== known.serial) {
      this.#revoked.set(previous.serial, { revokedAt: new Date(this.#clock.now()), notAfter: previous.notAfter, why: 'superseded' })
    }
    this.#current.set(commonName, known)
  }
}

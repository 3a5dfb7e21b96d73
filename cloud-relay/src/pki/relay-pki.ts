/**
 * The relay's own certificate authority (DESIGN §4): it signs each gateway's client certificate at enrollment
 * and renewal, the broker's and the enrollment endpoint's server certificates, and the relay's own MQTT
 * client certificate; it verifies a presented client certificate and writes the CRL Mosquitto reads.
 *
 * EC P-256 throughout (WebCrypto, native): issuing takes about a millisecond.
 */
import { createHash, KeyObject, webcrypto, X509Certificate as NodeX509 } from 'node:crypto'
import { loadX509 } from '#kernel/x509.js'

type X509Module = typeof import('@peculiar/x509')

const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' }
const DAY_MS = 24 * 3600_000
/** Certificates start this far in the past, so a peer whose clock is a little behind does not see "not yet valid". */
const BACKDATE_MS = 10 * 60_000

/** The CA's certificate and key. The key is a secret: the relay keeps it sealed in its store. */
export interface CaMaterial {
  caCertPem: string
  /** PKCS#8 PEM. */
  caKeyPem: string
}

export interface IssuedCertificate {
  certPem: string
  /** Lower-case hex, as OpenSSL and Node print it (no leading zeros stripped). */
  serial: string
  notBefore: Date
  notAfter: Date
  /** SHA-256 of the DER certificate, lower-case hex. */
  fingerprint256: string
}

export interface VerifiedClientCertificate {
  commonName: string
  serial: string
  notBefore: Date
  notAfter: Date
  fingerprint256: string
  /** SHA-256 of the DER SubjectPublicKeyInfo, lower-case hex: the key's identity across renewals. */
  publicKeySha256: string
}

export class PkiError extends Error {
  constructor(readonly code: 'PKI_BAD_CSR' | 'PKI_NOT_OURS' | 'PKI_EXPIRED' | 'PKI_NOT_YET_VALID' | 'PKI_BAD_CERT', message: string) {
    super(message)
    this.name = 'PkiError'
  }
}

/** Makes a new CA (self-signed, P-256). `name` becomes the CN, e.g. "PBX Presence Relay CA (contoso-relay)". */
export async function createRelayCa(name: string, options: { validityDays?: number; now?: number } = {}): Promise<CaMaterial> {
  const x = await loadX509()
  const now = options.now ?? Date.now()
  const keys = (await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${escapeDn(name)}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (options.validityDays ?? 3650) * DAY_MS),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x.BasicConstraintsExtension(true, 0, true),
      new x.KeyUsagesExtension(x.KeyUsageFlags.keyCertSign | x.KeyUsageFlags.cRLSign, true),
      await x.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
    ],
  }, webcrypto)
  return { caCertPem: cert.toString('pem'), caKeyPem: exportPkcs8(keys.privateKey) }
}

/** Makes a P-256 key pair; the private key as PKCS#8 PEM. */
export async function generateKeyPem(): Promise<{ keyPem: string; publicKey: webcrypto.CryptoKey; privateKey: webcrypto.CryptoKey }> {
  const keys = (await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  return { keyPem: exportPkcs8(keys.privateKey), publicKey: keys.publicKey, privateKey: keys.privateKey }
}

/** A PKCS#10 request for `commonName` signed with the given PKCS#8 key (tests and tools; the box makes its own). */
export async function createCsr(commonName: string, keyPem: string): Promise<string> {
  const x = await loadX509()
  const privateKey = await importPkcs8(keyPem, ['sign'])
  const publicKey = await publicKeyOf(keyPem)
  const csr = await x.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeDn(commonName)}`,
    keys: { privateKey, publicKey },
    signingAlgorithm: SIGNING,
  }, webcrypto)
  return csr.toString('pem')
}

export class RelayPki {
  readonly #x: X509Module
  readonly #caCert: import('@peculiar/x509').X509Certificate
  readonly #caKey: webcrypto.CryptoKey
  readonly #caPem: string
  readonly #nodeCa: NodeX509

  private constructor(x: X509Module, caCert: import('@peculiar/x509').X509Certificate, caKey: webcrypto.CryptoKey, caPem: string) {
    this.#x = x
    this.#caCert = caCert
    this.#caKey = caKey
    this.#caPem = caPem
    this.#nodeCa = new NodeX509(caPem)
  }

  static async load(ca: CaMaterial): Promise<RelayPki> {
    const x = await loadX509()
    const caCert = new x.X509Certificate(ca.caCertPem)
    const caKey = await importPkcs8(ca.caKeyPem, ['sign'])
    return new RelayPki(x, caCert, caKey, ca.caCertPem)
  }

  /** PEM of the CA certificate: what the box and the broker trust. */
  get caCertPem(): string {
    return this.#caPem
  }

  /** SHA-256 of the CA certificate (hex), e.g. for a pin an installer can compare. */
  get caFingerprint256(): string {
    return this.#nodeCa.fingerprint256.replaceAll(':', '').toLowerCase()
  }

  /** A server certificate (broker, enrollment HTTPS) with a fresh key. */
  async issueServerCertificate(options: { dnsNames?: readonly string[]; ipAddresses?: readonly string[]; validityDays?: number; now?: number } = {}): Promise<IssuedCertificate & { keyPem: string }> {
    const keys = await generateKeyPem()
    const dnsNames = options.dnsNames ?? ['localhost']
    const ipAddresses = options.ipAddresses ?? ['127.0.0.1', '::1']
    const x = this.#x
    const issued = await this.#issue({
      subject: dnsNames[0] ?? ipAddresses[0] ?? 'localhost',
      publicKey: keys.publicKey,
      validityDays: options.validityDays ?? 397,
      now: options.now,
      extensions: [
        new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature, true),
        new x.ExtendedKeyUsageExtension([x.ExtendedKeyUsage.serverAuth], false),
        new x.SubjectAlternativeNameExtension([
          ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
          ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
        ]),
      ],
    })
    return { ...issued, keyPem: keys.keyPem }
  }

  /** A client certificate with a fresh key (the relay's own MQTT identity, test clients). */
  async issueClientCertificate(commonName: string, options: { validityDays?: number; now?: number } = {}): Promise<IssuedCertificate & { keyPem: string }> {
    const keys = await generateKeyPem()
    const issued = await this.#issue({ subject: commonName, publicKey: keys.publicKey, validityDays: options.validityDays ?? 365, now: options.now, extensions: this.#clientExtensions() })
    return { ...issued, keyPem: keys.keyPem }
  }

  /**
   * Signs a box's CSR. The CSR's own signature proves the box holds the key; its subject is ignored: the
   * certificate's CN is `commonName` (the gateway id the relay decided on), never what the box asked for.
   */
  async signCsr(csrPem: string, commonName: string, options: { validityDays: number; now?: number }): Promise<IssuedCertificate & { publicKeySha256: string }> {
    const csr = await this.#checkedCsr(csrPem)
    const publicKey = await csr.publicKey.export(EC_KEY, ['verify'], webcrypto)
    const issued = await this.#issue({ subject: commonName, publicKey, validityDays: options.validityDays, now: options.now, extensions: this.#clientExtensions() })
    return { ...issued, publicKeySha256: sha256Hex(Buffer.from(csr.publicKey.rawData)) }
  }

  async #checkedCsr(csrPem: string): Promise<import('@peculiar/x509').Pkcs10CertificateRequest> {
    const x = this.#x
    let csr: import('@peculiar/x509').Pkcs10CertificateRequest
    try {
      csr = new x.Pkcs10CertificateRequest(csrPem)
    } catch (err) {
      throw new PkiError('PKI_BAD_CSR', `the certificate request is not a PEM PKCS#10 CSR: ${(err as Error).message}`)
    }
    let valid = false
    try {
      valid = await csr.verify(webcrypto)
    } catch {
      valid = false
    }
    if (!valid) throw new PkiError('PKI_BAD_CSR', 'the certificate request\'s signature does not verify: the box must sign it with its own key')
    const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string }
    if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
      throw new PkiError('PKI_BAD_CSR', `the certificate request has a ${algorithm.name ?? 'unknown'} ${algorithm.namedCurve ?? ''} key; the relay signs EC P-256 keys only`)
    }
    return csr
  }

  /**
   * Checks a CSR without issuing anything: PEM PKCS#10, signature verifies (proof that the sender holds the key),
   * EC P-256. Returns the SHA-256 of its SubjectPublicKeyInfo, comparable with a certificate's publicKeySha256.
   */
  async inspectCsr(csrPem: string): Promise<{ publicKeySha256: string }> {
    const csr = await this.#checkedCsr(csrPem)
    return { publicKeySha256: sha256Hex(Buffer.from(csr.publicKey.rawData)) }
  }

  /** Checks that a client certificate was issued by this CA and is within its validity at `now`. */
  verifyClientCertificate(certPem: string, now = Date.now()): VerifiedClientCertificate {
    let cert: NodeX509
    try {
      cert = new NodeX509(certPem)
    } catch (err) {
      throw new PkiError('PKI_BAD_CERT', `not a PEM certificate: ${(err as Error).message}`)
    }
    if (!cert.checkIssued(this.#nodeCa) || !cert.verify(this.#nodeCa.publicKey)) {
      throw new PkiError('PKI_NOT_OURS', 'the certificate was not issued by this relay\'s CA')
    }
    const notBefore = new Date(cert.validFrom)
    const notAfter = new Date(cert.validTo)
    if (now < notBefore.getTime()) throw new PkiError('PKI_NOT_YET_VALID', `the certificate is valid from ${notBefore.toISOString()}; the relay's clock says ${new Date(now).toISOString()}`)
    if (now > notAfter.getTime()) throw new PkiError('PKI_EXPIRED', `the certificate expired at ${notAfter.toISOString()}`)
    return {
      commonName: commonNameOf(cert.subject),
      serial: cert.serialNumber.toLowerCase(),
      notBefore,
      notAfter,
      fingerprint256: cert.fingerprint256.replaceAll(':', '').toLowerCase(),
      publicKeySha256: sha256Hex(cert.publicKey.export({ type: 'spki', format: 'der' })),
    }
  }

  /** A CRL (PEM) listing the given serials, for Mosquitto's `crlfile`. */
  async createCrl(revoked: ReadonlyArray<{ serial: string; revokedAt: Date }>, options: { now?: number; nextUpdateDays?: number } = {}): Promise<string> {
    const x = this.#x
    const now = options.now ?? Date.now()
    const crl = await x.X509CrlGenerator.create({
      issuer: this.#caCert.subject,
      thisUpdate: new Date(now - BACKDATE_MS),
      nextUpdate: new Date(now + (options.nextUpdateDays ?? 30) * DAY_MS),
      entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: r.revokedAt })),
      signingKey: this.#caKey,
      signingAlgorithm: SIGNING,
      extensions: [await x.AuthorityKeyIdentifierExtension.create(this.#caCert, false, webcrypto)],
    }, webcrypto)
    // OpenSSL (and so Mosquitto) reads only the "X509 CRL" PEM label.
    return crl.toString('pem').replace('-----BEGIN CRL-----', '-----BEGIN X509 CRL-----').replace('-----END CRL-----', '-----END X509 CRL-----')
  }

  #clientExtensions(): import('@peculiar/x509').Extension[] {
    const x = this.#x
    return [
      new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature, true),
      new x.ExtendedKeyUsageExtension([x.ExtendedKeyUsage.clientAuth], false),
    ]
  }

  async #issue(params: { subject: string; publicKey: webcrypto.CryptoKey; validityDays: number; now: number | undefined; extensions: import('@peculiar/x509').Extension[] }): Promise<IssuedCertificate> {
    const x = this.#x
    const now = params.now ?? Date.now()
    const notBefore = new Date(now - BACKDATE_MS)
    const notAfter = new Date(now + params.validityDays * DAY_MS)
    const cert = await x.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${escapeDn(params.subject)}`,
      issuer: this.#caCert.subject,
      notBefore,
      notAfter,
      publicKey: params.publicKey,
      signingKey: this.#caKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x.BasicConstraintsExtension(false, undefined, true),
        ...params.extensions,
        await x.AuthorityKeyIdentifierExtension.create(this.#caCert, false, webcrypto),
      ],
    }, webcrypto)
    const pem = cert.toString('pem')
    const node = new NodeX509(pem)
    return {
      certPem: pem,
      serial: node.serialNumber.toLowerCase(),
      notBefore: new Date(node.validFrom),
      notAfter: new Date(node.validTo),
      fingerprint256: node.fingerprint256.replaceAll(':', '').toLowerCase(),
    }
  }
}

/** thisUpdate and nextUpdate of a PEM CRL (as createCrl writes it), e.g. to check how long Mosquitto's CRL holds. */
export async function readCrlDates(pem: string): Promise<{ thisUpdate: Date; nextUpdate: Date }> {
  const x = await loadX509()
  const crl = new x.X509Crl(pem.replace('-----BEGIN X509 CRL-----', '-----BEGIN CRL-----').replace('-----END X509 CRL-----', '-----END CRL-----'))
  if (crl.nextUpdate === undefined) throw new Error('the CRL has no nextUpdate')
  return { thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate }
}

/** The CN of a Node X509Certificate subject ("CN=gw-1\nO=..." or "CN=gw-1"). */
export function commonNameOf(subject: string): string {
  for (const line of subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3)
  return ''
}

function exportPkcs8(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString()
}

async function importPkcs8(pem: string, usages: webcrypto.KeyUsage[]): Promise<webcrypto.CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
  return webcrypto.subtle.importKey('pkcs8', der, EC_KEY, true, usages)
}

async function publicKeyOf(privatePem: string): Promise<webcrypto.CryptoKey> {
  const { createPublicKey } = await import('node:crypto')
  const spki = createPublicKey(privatePem).export({ type: 'spki', format: 'der' })
  return webcrypto.subtle.importKey('spki', spki, EC_KEY, true, ['verify'])
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** 16 random bytes with the top bit set clear (positive DER INTEGER) and never a leading zero byte. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16))
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x10
  return Buffer.from(bytes).toString('hex')
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, '\\$1')
}

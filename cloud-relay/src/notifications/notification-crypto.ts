/**
 * Rich presence notifications carry the presence encrypted for us (research §3, "Decryption"):
 * a per-item AES key RSA-OAEP(SHA-1)-encrypted with our certificate's public key, the data AES-256-CBC
 * (PKCS7, IV = first 16 bytes of the key), and an HMAC-SHA256 of the ciphertext under the same key. The HMAC
 * is checked first, in constant time; nothing is decrypted before it matches.
 *
 * The certificate is self-signed (Graph accepts that), RSA 2048, made here with a few lines of DER rather
 * than a library: Graph only reads the public key from it.
 */
import {
  constants,
  createDecipheriv,
  createHash,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  randomBytes,
  sign,
  timingSafeEqual,
  X509Certificate,
  type KeyObject,
} from 'node:crypto'

export interface NotificationCertificate {
  /** Our id for it, sent as encryptionCertificateId and echoed in every notification. */
  id: string
  certificatePem: string
  privateKeyPem: string
  notAfter: Date
}

/** A fresh self-signed RSA 2048 certificate valid `validityDays` from `nowMs`. */
export function createNotificationCertificate(nowMs: number, validityDays = 365): NotificationCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const notBefore = new Date(nowMs - 3600_000)
  const notAfter = new Date(nowMs + validityDays * 86_400_000)
  const name = der(0x30, der(0x31, der(0x30, Buffer.concat([oid('2.5.4.3'), der(0x0c, Buffer.from('pbx-presence-relay notifications', 'utf8'))]))))
  const sha256WithRsa = der(0x30, Buffer.concat([oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00])]))
  const serial = randomBytes(16)
  serial[0] = serial[0]! & 0x7f
  const tbs = der(0x30, Buffer.concat([
    der(0xa0, der(0x02, Buffer.from([2]))), // v3
    der(0x02, serial),
    sha256WithRsa,
    name,
    der(0x30, Buffer.concat([utcTime(notBefore), utcTime(notAfter)])),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
  ]))
  const signature = sign('sha256', tbs, privateKey)
  const certDer = der(0x30, Buffer.concat([tbs, sha256WithRsa, der(0x03, Buffer.concat([Buffer.from([0]), signature]))]))
  const certificatePem = `-----BEGIN CERTIFICATE-----\n${certDer.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`
  // Self-check: Node must parse what we built, or Graph would not either.
  const x509 = new X509Certificate(certificatePem)
  return {
    id: `relay-${createHash('sha256').update(certDer).digest('hex').slice(0, 24)}`,
    certificatePem: x509.toString(),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    notAfter,
  }
}

/** The certificate as Graph wants it in `encryptionCertificate`: base64 DER, no PEM armour. */
export function certificateBase64(certificatePem: string): string {
  return new X509Certificate(certificatePem).raw.toString('base64')
}

export interface EncryptedContent {
  data: string
  dataSignature: string
  dataKey: string
  encryptionCertificateId: string
  encryptionCertificateThumbprint?: string
}

export type DecryptFailure = 'unknown-certificate' | 'bad-key' | 'bad-signature' | 'bad-data'

export class DecryptError extends Error {
  constructor(readonly reason: DecryptFailure, message: string) {
    super(message)
    this.name = 'DecryptError'
  }
}

/** Decrypts one item's encryptedContent to its JSON value; throws DecryptError with the reason. */
export function decryptResourceData(content: EncryptedContent, keyFor: (certificateId: string) => KeyObject | undefined): unknown {
  const key = keyFor(content.encryptionCertificateId)
  if (key === undefined) throw new DecryptError('unknown-certificate', `encrypted with certificate "${content.encryptionCertificateId}", which the relay does not hold`)
  let symmetric: Buffer
  try {
    symmetric = privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from(content.dataKey, 'base64'))
  } catch {
    throw new DecryptError('bad-key', 'the data key does not decrypt with our certificate')
  }
  if (symmetric.length !== 32) throw new DecryptError('bad-key', `the data key is ${symmetric.length} bytes, expected 32`)
  const data = Buffer.from(content.data, 'base64')
  const expected = createHmac('sha256', symmetric).update(data).digest()
  const given = Buffer.from(content.dataSignature, 'base64')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new DecryptError('bad-signature', 'the data signature (HMAC-SHA256) does not match: the content was altered')
  }
  try {
    const decipher = createDecipheriv('aes-256-cbc', symmetric, symmetric.subarray(0, 16))
    const plain = Buffer.concat([decipher.update(data), decipher.final()]).toString('utf8')
    return JSON.parse(plain) as unknown
  } catch {
    throw new DecryptError('bad-data', 'the content does not decrypt to JSON')
  }
}

// ---- DER ----

function der(tag: number, body: Buffer): Buffer {
  const n = body.length
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : n < 0x10000 ? Buffer.from([0x82, n >> 8, n & 0xff]) : Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff])
  return Buffer.concat([Buffer.from([tag]), length, body])
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number)
  const bytes: number[] = [40 * parts[0]! + parts[1]!]
  for (const part of parts.slice(2)) {
    const chunk: number[] = [part & 0x7f]
    for (let v = part >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80)
    bytes.push(...chunk)
  }
  return der(0x06, Buffer.from(bytes))
}

function utcTime(d: Date): Buffer {
  // UTCTime (YYMMDDHHMMSSZ) covers 1950-2049, enough for a certificate we renew yearly.
  const iso = d.toISOString()
  return der(0x17, Buffer.from(`${iso.slice(2, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`, 'ascii'))
}

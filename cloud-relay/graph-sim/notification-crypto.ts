/**
 * Encrypted resource data of rich change notifications, exactly as research §3 (learn
 * `change-notifications-with-resource-data`) describes the receiving side: a random AES-256 key per item,
 * RSA-OAEP (SHA-1) over that key with the subscriber's certificate (`dataKey`), AES-256-CBC with PKCS7 padding
 * and IV = the key's first 16 bytes (`data`), and HMAC-SHA256 with the same key over the encrypted bytes
 * (`dataSignature`). All base64.
 */
import { X509Certificate, constants, createCipheriv, createHash, createHmac, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto'

export interface EncryptionCertificate {
  id: string
  publicKey: KeyObject
  /** SHA-1 of the DER, upper-case hex (how Windows tools and the portal show thumbprints). */
  thumbprint: string
}

export interface EncryptedContent {
  data: string
  dataSignature: string
  dataKey: string
  encryptionCertificateId: string
  encryptionCertificateThumbprint: string
}

/**
 * The subscription's `encryptionCertificate`: base64 DER as Graph documents it (a PEM is accepted too).
 * Returns a reason string when it cannot be used.
 */
export function parseEncryptionCertificate(text: string, id: string): EncryptionCertificate | string {
  let cert: X509Certificate
  try {
    cert = text.includes('-----BEGIN') ? new X509Certificate(text) : new X509Certificate(Buffer.from(text, 'base64'))
  } catch {
    return 'encryptionCertificate is not a base64-encoded X.509 certificate.'
  }
  const key = cert.publicKey
  const bits = key.asymmetricKeyDetails?.modulusLength
  if (key.asymmetricKeyType !== 'rsa' || bits === undefined || bits < 2048 || bits > 4096) {
    return 'encryptionCertificate must hold an RSA public key of 2048 to 4096 bits.'
  }
  return { id, publicKey: key, thumbprint: createHash('sha1').update(cert.raw).digest('hex').toUpperCase() }
}

export function encryptResourceData(resource: unknown, certificate: EncryptionCertificate): EncryptedContent {
  const key = randomBytes(32)
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16))
  const data = Buffer.concat([cipher.update(JSON.stringify(resource), 'utf8'), cipher.final()])
  const dataKey = publicEncrypt(
    { key: certificate.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
    key,
  )
  return {
    data: data.toString('base64'),
    dataSignature: createHmac('sha256', key).update(data).digest('base64'),
    dataKey: dataKey.toString('base64'),
    encryptionCertificateId: certificate.id,
    encryptionCertificateThumbprint: certificate.thumbprint,
  }
}

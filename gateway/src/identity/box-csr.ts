import { createPublicKey, webcrypto } from 'node:crypto'
import { ensureReflectMetadata } from '../core/reflect-metadata-shim.js'

const EC_KEY: webcrypto.EcKeyImportParams = { name: 'ECDSA', namedCurve: 'P-256' }

/**
 * A PKCS#10 request for the box's key, signed with it (the relay's proof that the box holds the key). The subject
 * is a hint only: the relay names the certificate after the gateway id it decided on.
 */
export async function createBoxCsr(keyPem: string, commonName: string): Promise<string> {
  // @peculiar/x509 needs Reflect metadata before it loads (see the shim), hence the late import.
  ensureReflectMetadata()
  const x = await import('@peculiar/x509')
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, EC_KEY, false, ['sign'])
  const spki = createPublicKey(keyPem).export({ type: 'spki', format: 'der' })
  const publicKey = await webcrypto.subtle.importKey('spki', spki, EC_KEY, true, ['verify'])
  const csr = await x.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName.replace(/([,+"\\<>;=])/g, '\\$1')}`,
    keys: { privateKey, publicKey },
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  }, webcrypto)
  return csr.toString('pem')
}

import { createPrivateKey } from 'node:crypto'
import { certificationRequest } from './x509-writer.js'

/**
 * A PKCS#10 request for the box's key, signed with it (the relay's proof that the box holds the key). The subject
 * is a hint only: the relay names the certificate after the gateway id it decided on.
 */
export async function createBoxCsr(keyPem: string, commonName: string): Promise<string> {
  return certificationRequest(createPrivateKey(keyPem), commonName)
}

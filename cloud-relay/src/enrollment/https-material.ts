import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import type { RelayConfig } from '../config/schema.js'
import type { RelayPki } from '../pki/relay-pki.js'

/**
 * The relay's HTTPS certificate and key: from PEM files, or issued from the relay CA for
 * enrollment.publicHostnames (a fresh key at every start; the chain sent includes the CA, so a box that pins the
 * CA's fingerprint finds it). undefined: plain HTTP.
 */
export async function relayHttpsMaterial(
  tls: RelayConfig['http']['tls'],
  pki: RelayPki,
  publicHostnames: readonly string[],
  now: number,
): Promise<{ certPem: string; keyPem: string } | undefined> {
  if (tls === undefined) return undefined
  if ('selfIssued' in tls) {
    const dnsNames = publicHostnames.filter((h) => isIP(h) === 0)
    const ipAddresses = publicHostnames.filter((h) => isIP(h) !== 0)
    const issued = await pki.issueServerCertificate({ dnsNames, ipAddresses, now })
    return { certPem: `${issued.certPem.trim()}\n${pki.caCertPem.trim()}\n`, keyPem: issued.keyPem }
  }
  const read = async (what: string, file: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8')
    } catch (err) {
      throw new Error(`cannot read http.tls.${what} ${file}: ${(err as Error).message}. Fix the path, or use {"selfIssued": true} to let the relay issue its own.`)
    }
  }
  return { certPem: await read('certFile', tls.certFile), keyPem: await read('keyFile', tls.keyFile) }
}

import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { hostname, networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { selfSignedServerCertificate } from '../identity/x509-writer.js'

/** The setup page's TLS certificate: self-signed, made at first boot, kept in `<dataDir>/web/`. */
export interface BoxWebCertificate {
  certPem: string
  keyPem: string
  /** SHA-256 of the certificate, "AB:CD:…", shown on the page so the installer can compare it with the browser's. */
  fingerprint256: string
  names: string[]
}

const DAY_MS = 86_400_000

/** hostname, localhost and every LAN address of the box (loopback included), for the certificate's SAN. */
export function boxNames(): { dns: string[]; ips: string[] } {
  const ips = new Set<string>(['127.0.0.1', '::1'])
  for (const list of Object.values(networkInterfaces())) for (const address of list ?? []) if (!address.address.startsWith('fe80')) ips.add(address.address)
  const dns = [...new Set([hostname(), 'localhost'].filter((name) => /^[A-Za-z0-9.-]+$/.test(name)))]
  return { dns, ips: [...ips] }
}

/** Loads the certificate from `<dataDir>/web/`, or makes one (P-256, 10 years) on first boot. */
export async function ensureBoxCertificate(dataDir: string): Promise<BoxWebCertificate> {
  const dir = join(dataDir, 'web')
  const certFile = join(dir, 'tls-cert.pem')
  const keyFile = join(dir, 'tls-key.pem')
  const existing = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]).catch(() => undefined)
  if (existing) return describe(existing[0], existing[1])
  const { dns, ips } = boxNames()
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const now = Date.now()
  const serial = randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) | 0x40 // positive, and 16 bytes long
  const certPem = selfSignedServerCertificate({
    privateKey, serial,
    commonName: dns[0] ?? 'pbx-gateway',
    organization: 'PBX presence gateway (setup page)',
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + 3650 * DAY_MS),
    dns, ips,
  })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  await mkdir(dir, { recursive: true, mode: 0o700 })
  await writeFileAtomic(keyFile, keyPem, 0o600)
  await writeFileAtomic(certFile, certPem, 0o644)
  return describe(certPem, keyPem)
}

function describe(certPem: string, keyPem: string): BoxWebCertificate {
  const cert = new X509Certificate(certPem)
  const names = (cert.subjectAltName ?? '').split(', ').map((entry) => entry.replace(/^(DNS|IP Address):/, '')).filter(Boolean)
  return { certPem, keyPem, fingerprint256: cert.fingerprint256, names }
}

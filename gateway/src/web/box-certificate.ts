import { randomBytes, webcrypto, X509Certificate } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { hostname, networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { ensureReflectMetadata } from '../core/reflect-metadata-shim.js'
import { writeFileAtomic } from '../identity/atomic-file.js'

/** The setup page's TLS certificate: self-signed, made at first boot, kept in `<dataDir>/web/`. */
export interface BoxWebCertificate {
  certPem: string
  keyPem: string
  /** SHA-256 of the certificate, "AB:CD:…", shown on the page so the installer can compare it with the browser's. */
  fingerprint256: string
  names: string[]
}

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const
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
  ensureReflectMetadata()
  const x = await import('@peculiar/x509')
  const { dns, ips } = boxNames()
  const keys = (await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const now = Date.now()
  const cert = await x.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '7'),
    name: `CN=${dns[0] ?? 'pbx-gateway'}, O=PBX presence gateway (setup page)`,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + 3650 * DAY_MS),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x.BasicConstraintsExtension(false, undefined, true),
      new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature, true),
      new x.ExtendedKeyUsageExtension([x.ExtendedKeyUsage.serverAuth]),
      new x.SubjectAlternativeNameExtension([...dns.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value }))]),
    ],
  }, webcrypto)
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END PRIVATE KEY-----\n`
  const certPem = cert.toString('pem')
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

/**
 * A throw-away private CA and a `localhost` server certificate, all in memory, for the Graph simulator.
 *
 * Why: msal-node refuses non-https authorities and graph-client only attaches the bearer token to https
 * URLs, so the simulator must speak TLS with a certificate the client can be told to trust.
 * EC P-256 keys come from WebCrypto (native), so this takes milliseconds, not the seconds a pure-JS RSA
 * keygen would.
 */
import { KeyObject, webcrypto } from 'node:crypto'
import { loadX509 } from '#kernel/x509.js'

export interface SimulatorPki {
  /** PEM of the CA certificate: what a client adds to its trust store. */
  caPem: string
  /** PEM of the server certificate (leaf only; the CA is the direct issuer). */
  certPem: string
  /** PKCS#8 PEM of the server key. */
  keyPem: string
  /** PKCS#8 PEM of the CA key, so more server certificates can be issued (e.g. for a test's webhook receiver). */
  caKeyPem?: string
}

export interface SimulatorPkiOptions {
  /** DNS names in the server certificate's SAN. Default ['localhost']. */
  dnsNames?: readonly string[]
  /** IP addresses in the server certificate's SAN. Default ['127.0.0.1', '::1']. */
  ipAddresses?: readonly string[]
  /** Validity in days. Default 2 (a simulator lives for one run). */
  validityDays?: number
}

const EC_KEY: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' }

export async function createSimulatorPki(options: SimulatorPkiOptions = {}): Promise<SimulatorPki> {
  const x509 = await loadX509()
  // Pass the provider explicitly so @peculiar/x509 never needs a process-wide cryptoProvider.set().
  const crypto = webcrypto
  const validityMs = (options.validityDays ?? 2) * 24 * 3600 * 1000
  // Backdate a little: a client whose clock is slightly behind must not see "not yet valid".
  const notBefore = new Date(Date.now() - 60 * 60 * 1000)
  const notAfter = new Date(Date.now() + validityMs)

  const caKeys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const caCert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: 'CN=Graph Simulator Test CA',
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  )

  const caKeyPem = KeyObject.from(caKeys.privateKey as webcrypto.CryptoKey)
    .export({ type: 'pkcs8', format: 'pem' })
    .toString()
  const caPem = caCert.toString('pem')
  // The simulator's own certificate is issued like any other from this CA.
  const server = await issueServerCertificate({ caPem, caKeyPem, certPem: '', keyPem: '' }, options)
  return { caPem, certPem: server.certPem, keyPem: server.keyPem, caKeyPem }
}

/**
 * Another server certificate from the same CA (default SAN: localhost, 127.0.0.1, ::1), e.g. for a webhook
 * receiver the simulator must trust. Needs a PKI made by createSimulatorPki (with its CA key).
 */
export async function issueServerCertificate(
  pki: SimulatorPki,
  options: SimulatorPkiOptions = {},
): Promise<{ certPem: string; keyPem: string; caPem: string }> {
  if (pki.caKeyPem === undefined) throw new Error('this PKI has no CA key: it cannot issue certificates')
  const x509 = await loadX509()
  const crypto = webcrypto
  const caCert = new x509.X509Certificate(pki.caPem)
  const caDer = Buffer.from(pki.caKeyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
  const caKey = await crypto.subtle.importKey('pkcs8', caDer, EC_KEY, true, ['sign'])
  const dnsNames = options.dnsNames ?? ['localhost']
  const ipAddresses = options.ipAddresses ?? ['127.0.0.1', '::1']
  const notBefore = new Date(Date.now() - 60 * 60 * 1000)
  const notAfter = new Date(Date.now() + (options.validityDays ?? 2) * 24 * 3600 * 1000)
  const keys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: `CN=${dnsNames[0] ?? ipAddresses[0] ?? 'localhost'}`,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([
          ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
          ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
      ],
    },
    crypto,
  )
  const keyPem = KeyObject.from(keys.privateKey as webcrypto.CryptoKey)
    .export({ type: 'pkcs8', format: 'pem' })
    .toString()
  return { certPem: cert.toString('pem'), keyPem, caPem: pki.caPem }
}

/** 16 random bytes with the top bit cleared, so the DER INTEGER stays positive. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16))
  bytes[0] = (bytes[0] ?? 0) & 0x7f
  return Buffer.from(bytes).toString('hex')
}

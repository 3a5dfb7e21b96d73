/**
 * A throw-away private CA and a `localhost` server certificate, all in memory, for the Graph simulator.
 *
 * Why: msal-node refuses non-https authorities and graph-client only attaches the bearer token to https
 * URLs, so the simulator must speak TLS with a certificate the client can be told to trust.
 * EC P-256 keys come from WebCrypto (native), so this takes milliseconds, not the seconds a pure-JS RSA
 * keygen would.
 */
import { KeyObject, webcrypto } from 'node:crypto'
import { ensureReflectMetadata } from './reflect-metadata-shim.js'

export interface SimulatorPki {
  /** PEM of the CA certificate: what a client adds to its trust store. */
  caPem: string
  /** PEM of the server certificate (leaf only; the CA is the direct issuer). */
  certPem: string
  /** PKCS#8 PEM of the server key. */
  keyPem: string
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
  // @peculiar/x509 needs Reflect metadata before it loads (see the shim), hence the late import.
  ensureReflectMetadata()
  const x509 = await import('@peculiar/x509')
  // Pass the provider explicitly so @peculiar/x509 never needs a process-wide cryptoProvider.set().
  const crypto = webcrypto
  const dnsNames = options.dnsNames ?? ['localhost']
  const ipAddresses = options.ipAddresses ?? ['127.0.0.1', '::1']
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

  const serverKeys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const serverCert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: `CN=${dnsNames[0] ?? 'localhost'}`,
      issuer: caCert.subject,
      notBefore,
      notAfter,
      publicKey: serverKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([
          ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
          ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
        ]),
        await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  )

  const keyPem = KeyObject.from(serverKeys.privateKey as webcrypto.CryptoKey)
    .export({ type: 'pkcs8', format: 'pem' })
    .toString()
  return { caPem: caCert.toString('pem'), certPem: serverCert.toString('pem'), keyPem }
}

/** 16 random bytes with the top bit cleared, so the DER INTEGER stays positive. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16))
  bytes[0] = (bytes[0] ?? 0) & 0x7f
  return Buffer.from(bytes).toString('hex')
}

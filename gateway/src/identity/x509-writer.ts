import { createPublicKey, sign, type KeyObject } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'

/**
 * The two X.509 documents the box itself writes, DER by hand over node:crypto: its setup page's self-signed
 * certificate (first boot) and the PKCS#10 request it sends to enroll. Both are P-256/ECDSA-SHA256 and fixed in
 * shape, so a few DER helpers do. @peculiar/x509 (with tsyringe and a dozen asn1 packages, about 180 modules)
 * did this before and stayed loaded for the life of the process: 4.7 MiB of RSS on a first boot (bench/README.md).
 * Parsing stays with node:crypto's X509Certificate.
 */

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let rest = n; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), length(body.length), body])
}

const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items)
const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items)
const utf8 = (text: string): Buffer => tlv(0x0c, Buffer.from(text, 'utf8'))
const octets = (bytes: Buffer): Buffer => tlv(0x04, bytes)
/** A BIT STRING of whole bytes (no unused bits). */
const bits = (bytes: Buffer): Buffer => tlv(0x03, Buffer.from([0]), bytes)
const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 + n, inner)

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number)
  const bytes = [40 * first + second]
  for (const arc of rest) {
    const base128 = [arc & 0x7f]
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v & 0x7f))
    bytes.push(...base128)
  }
  return tlv(0x06, Buffer.from(bytes))
}

/** A non-negative INTEGER from big-endian bytes, minimal as DER wants it. */
function unsigned(bytes: Buffer): Buffer {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const trimmed = bytes.subarray(start)
  return tlv(0x02, (trimmed[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed)
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5), to the second. */
function time(at: Date): Buffer {
  const iso = at.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z')
  return at.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii')) : tlv(0x18, Buffer.from(iso, 'ascii'))
}

function name(parts: Array<[keyof typeof OID, string]>): Buffer {
  return sequence(...parts.map(([type, value]) => set(sequence(oid(OID[type]), utf8(value)))))
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [Buffer.from([0x01, 0x01, 0xff])] : []), octets(value))
}

/** The 4 or 16 bytes of an IP address, for a subjectAltName iPAddress. */
export function ipBytes(address: string): Buffer {
  const ip = address.split('%')[0] ?? address // a zone (fe80::1%eth0) is not part of the address
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${address}`)
  const groups = (text: string): number[] => text === '' ? [] : text.split(':').flatMap((g) => {
    if (!isIPv4(g)) return [parseInt(g, 16)]
    const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number) // ::ffff:192.0.2.1
    return [a * 256 + b, c * 256 + d]
  })
  const [head = '', tail] = ip.split('::')
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
  const out = Buffer.alloc(16)
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  return out
}

const SIGNATURE_ALGORITHM = sequence(oid(OID.ecdsaWithSha256))

function signed(body: Buffer, privateKey: KeyObject): Buffer {
  return sequence(body, SIGNATURE_ALGORITHM, bits(sign('sha256', body, privateKey)))
}

function pem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END ${label}-----\n`
}

export interface SelfSignedOptions {
  /** A P-256 private key. */
  privateKey: KeyObject
  /** Positive, at most 20 bytes. */
  serial: Buffer
  commonName: string
  organization: string
  notBefore: Date
  notAfter: Date
  dns: readonly string[]
  ips: readonly string[]
}

/** A self-signed TLS server certificate (not a CA; digitalSignature; serverAuth; the names in subjectAltName), PEM. */
export function selfSignedServerCertificate(options: SelfSignedOptions): string {
  const subject = name([['commonName', options.commonName], ['organization', options.organization]])
  const altNames = sequence(
    ...options.dns.map((dns) => tlv(0x82, Buffer.from(dns, 'ascii'))),
    ...options.ips.map((ip) => tlv(0x87, ipBytes(ip))),
  )
  const tbs = sequence(
    explicit(0, unsigned(Buffer.from([2]))), // v3
    unsigned(options.serial),
    SIGNATURE_ALGORITHM,
    subject,
    sequence(time(options.notBefore), time(options.notAfter)),
    subject,
    createPublicKey(options.privateKey).export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(
      extension(OID.basicConstraints, true, sequence()),
      extension(OID.keyUsage, true, tlv(0x03, Buffer.from([0x07, 0x80]))), // digitalSignature, 7 unused bits
      extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
      extension(OID.subjectAltName, false, altNames),
    )),
  )
  return pem('CERTIFICATE', signed(tbs, options.privateKey))
}

/** A PKCS#10 certificate request for the key, subject CN only, no attributes, PEM. */
export function certificationRequest(privateKey: KeyObject, commonName: string): string {
  const info = sequence(
    unsigned(Buffer.from([0])),
    name([['commonName', commonName]]),
    createPublicKey(privateKey).export({ type: 'spki', format: 'der' }),
    tlv(0xa0), // [0] attributes: none
  )
  return pem('CERTIFICATE REQUEST', signed(info, privateKey))
}

import type * as Http from 'node:http'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { certificateChain, fingerprintOf, matchesPin, normaliseFingerprint } from '../adapters/kit/tls-pinning.js'
import { checkServerIdentity, connect as tlsConnect, rootCertificates, type DetailedPeerCertificate, type PeerCertificate } from 'node:tls'
import type { Dispatcher } from 'undici'

// Required, not imported: on Node 24 an ESM import of node:http reads every export of the module, and its lazy
// WebSocket/MessageEvent getters load Node's internal undici (a 770 KB source): 11 MiB more RSS and 0.1-0.15 s
// more start-up on a dev machine (10-20x that under the boot test's emulation; bench/README.md).
const { request: httpRequest } = createRequire(import.meta.url)('node:http') as typeof Http

/**
 * How the box trusts the relay's HTTPS endpoint: the system CAs, an optional CA file, and an optional pinned
 * SHA-256 fingerprint of the relay's CA or server certificate (installers copy it from the console). A pin lets
 * the box enroll against a relay whose certificate no public CA signed: the box first looks at the chain the
 * relay presents, finds the pinned certificate, trusts it (a CA) or the chain's root (the pinned server
 * certificate), and then every connection must present the pinned certificate again.
 */
export interface RelayTrust {
  /** Extra trusted CA certificates (PEM), e.g. the caFile's and, after enrollment, the relay CA. */
  caPems: readonly string[]
  /** Lower-case hex SHA-256 (64 characters), see normalisePin. */
  pin?: string | undefined
  /** http://[user:pass@]proxy:port — CONNECT tunnels for HTTPS. */
  proxyUrl?: string | undefined
}

export class TrustError extends Error {
  constructor(readonly code: 'BOX_TLS_PIN_MISMATCH' | 'BOX_BAD_PIN' | 'BOX_PROXY', message: string) {
    super(message)
    this.name = 'TrustError'
  }
}

/** "AB:CD:…" or "abcd…" (64 hex digits) → lower-case hex; undefined when it is not a SHA-256 fingerprint. */
export const normalisePin = normaliseFingerprint

function toPem(der: Buffer): string {
  const b64 = der.toString('base64').match(/.{1,64}/g)?.join('\n') ?? ''
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`
}

/** The TLS options every connection to the relay uses: CA list and the hostname + pin check. */
function tlsOptions(trust: RelayTrust, anchors: readonly string[]) {
  return {
    // Passing `ca` replaces Node's defaults, so the system roots go in explicitly.
    ca: [...rootCertificates, ...trust.caPems, ...anchors],
    checkServerIdentity: (host: string, cert: PeerCertificate): Error | undefined => {
      const problem = checkServerIdentity(host, cert)
      if (problem) return problem
      if (trust.pin !== undefined && !matchesPin(cert, trust.pin, 'chain')) {
        const error = new TrustError('BOX_TLS_PIN_MISMATCH', `the relay's certificates do not match relay.caFingerprint (${trust.pin})`)
        return error
      }
      return undefined
    },
  }
}

/**
 * undici, loaded when the box first talks to the relay's HTTPS API (enrollment, renewal): a box that is not
 * enrolling does not carry it (about 4 MiB of resident memory, bench/gateway-memory.ts).
 */
async function loadUndici(): Promise<Pick<typeof import('undici'), 'Agent' | 'ProxyAgent' | 'request'>> {
  const { Agent, ProxyAgent, request } = await import('undici')
  return { Agent, ProxyAgent, request }
}

/** An HTTPS request to the relay through a dispatcher from createRelayDispatcher. */
export async function relayRequest(url: string | URL, options: { method: 'GET' | 'POST'; dispatcher?: Dispatcher; headers?: Record<string, string>; body?: string }): Promise<Dispatcher.ResponseData> {
  const { request } = await loadUndici()
  return request(url, options)
}

/**
 * An undici dispatcher for requests to the relay. With a pin, `anchors` holds what discoverPinnedAnchor found.
 * `insecure` (only for reading the relay's clock to explain a certificate date error) checks nothing.
 */
export async function createRelayDispatcher(trust: RelayTrust, anchors: readonly string[] = [], options: { insecure?: boolean; timeoutMs?: number } = {}): Promise<Dispatcher> {
  const { Agent, ProxyAgent } = await loadUndici()
  const tls = options.insecure ? { rejectUnauthorized: false } : tlsOptions(trust, anchors)
  const timeouts = { connectTimeout: options.timeoutMs ?? 15_000, headersTimeout: options.timeoutMs ?? 15_000, bodyTimeout: options.timeoutMs ?? 15_000 }
  if (trust.proxyUrl) return new ProxyAgent({ uri: trust.proxyUrl, requestTls: tls, ...timeouts })
  return new Agent({ connect: { ...tls, timeout: timeouts.connectTimeout }, headersTimeout: timeouts.headersTimeout, bodyTimeout: timeouts.bodyTimeout })
}

/**
 * With a pin: opens one TLS connection to the relay (through the proxy when set) without verifying, reads the
 * presented chain and returns the certificate to trust: the pinned one when it is a CA, else the chain's root.
 * Nothing is sent over this connection. Throws BOX_TLS_PIN_MISMATCH with the fingerprints the relay presented.
 */
export async function discoverPinnedAnchor(relayUrl: string, trust: RelayTrust, timeoutMs = 15_000): Promise<string> {
  const pin = trust.pin
  if (pin === undefined) throw new TrustError('BOX_BAD_PIN', 'no pin to look for')
  const url = new URL(relayUrl)
  const port = Number(url.port || 443)
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const tunnel = trust.proxyUrl ? await openTunnel(trust.proxyUrl, host, port, timeoutMs) : undefined
  const chain = await new Promise<DetailedPeerCertificate[]>((resolve, reject) => {
    const socket = tlsConnect({ host, port, servername: isIpLiteral(host) ? undefined : host, rejectUnauthorized: false, ...(tunnel ? { socket: tunnel } : {}) })
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`no TLS answer from ${host}:${port} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs)
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      const chain = certificateChain(socket.getPeerCertificate(true))
      socket.end()
      resolve(chain)
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
  const index = chain.findIndex((c) => fingerprintOf(c) === pin)
  const matched = chain[index]
  if (!matched) {
    const presented = chain.map((c, i) => `${i === 0 ? 'server' : 'issuer'} ${c.subject?.CN ?? '?'}: ${fingerprintOf(c) ?? '?'}`).join('; ')
    throw new TrustError('BOX_TLS_PIN_MISMATCH', `the relay at ${url.host} presented certificates whose fingerprints do not match relay.caFingerprint (${pin}): ${presented || 'none'}. Copy the pin again from the console; if it is right, something between the box and the relay (a TLS-inspecting proxy) is answering instead of the relay.`)
  }
  const isCa = index > 0 || chain.length === 1
  const anchor = isCa ? matched : chain[chain.length - 1] ?? matched
  return toPem(anchor.raw)
}

function isIpLiteral(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':')
}

/** An HTTP CONNECT tunnel through the proxy to host:port. */
async function openTunnel(proxyUrl: string, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const proxy = new URL(proxyUrl)
  const headers: Record<string, string> = { host: `${host}:${port}` }
  if (proxy.username) headers['proxy-authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`
  return new Promise<Socket>((resolve, reject) => {
    const req = httpRequest({ host: proxy.hostname, port: Number(proxy.port || 80), method: 'CONNECT', path: `${host.includes(':') ? `[${host}]` : host}:${port}`, headers, timeout: timeoutMs })
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) return resolve(socket)
      socket.destroy()
      reject(new TrustError('BOX_PROXY', `the proxy ${proxy.host} refused the tunnel to ${host}:${port} (HTTP ${res.statusCode ?? '?'}): check relay.proxyUrl and that the proxy allows CONNECT to port ${port}`))
    })
    req.once('timeout', () => req.destroy(Object.assign(new Error(`the proxy ${proxy.host} did not answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })))
    req.once('error', reject)
    req.end()
  })
}

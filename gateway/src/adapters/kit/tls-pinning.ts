import { checkServerIdentity, type DetailedPeerCertificate, type PeerCertificate, type TLSSocket } from 'node:tls'

/**
 * Certificate pinning and peer checks, written once for every TLS client of the box: the PBX links (a pinned
 * PBX certificate) and the relay trust in `identity/relay-trust.ts` (a pinned relay CA or server certificate).
 * Node's tls only: the box imports it at start (the https Agent that uses it is in verifying-agent.ts).
 */

/** "AB:CD:…", "sha256:abcd…" or "abcd…" (64 hex digits) → lower-case hex; undefined when it is no SHA-256 fingerprint. */
export function normaliseFingerprint(text: string): string | undefined {
  const hex = text.trim().replace(/^sha256[:/]/i, '').replace(/[:\s]/g, '').toLowerCase()
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined
}

/** The certificate's SHA-256 as lower-case hex; undefined when the peer presented none. */
export function fingerprintOf(certificate: PeerCertificate): string | undefined {
  return certificate.fingerprint256?.replaceAll(':', '').toLowerCase()
}

/** The presented chain from the server certificate up, each certificate once. */
export function certificateChain(leaf: DetailedPeerCertificate): DetailedPeerCertificate[] {
  const chain: DetailedPeerCertificate[] = []
  for (let c: DetailedPeerCertificate | undefined = leaf; c && !chain.includes(c); c = c.issuerCertificate as DetailedPeerCertificate | undefined) {
    if (!c.raw) break
    chain.push(c)
    if (c.issuerCertificate === c) break
  }
  return chain
}

/**
 * Whether the pinned certificate was presented: `server`, the server's own certificate (a PBX's self-signed
 * one); `chain`, any certificate of its chain (a pinned CA).
 */
export function matchesPin(certificate: PeerCertificate, pin: string, scope: 'server' | 'chain'): boolean {
  if (scope === 'server') return fingerprintOf(certificate) === pin
  return certificateChain(certificate as DetailedPeerCertificate).some((c) => fingerprintOf(c) === pin)
}

/** Why a TLS peer is not the one we meant to reach, with the fingerprint it presented for the installer. */
export type PeerProblem =
  | { code: 'PIN_MISMATCH'; fingerprint256?: string }
  | { code: 'UNTRUSTED'; tlsError: string; fingerprint256?: string }
  | { code: 'WRONG_NAME'; tlsError: 'ERR_TLS_CERT_ALTNAME_INVALID'; reason: string; fingerprint256?: string }

/**
 * The check of a PBX's certificate: with a pin, exactly that certificate, whoever signed it and whatever names
 * it has; without one, the chain must verify (system CAs or the configured CA) and name `serverName`.
 */
export function checkPeer(socket: TLSSocket, expected: { pin?: string | undefined; serverName: string }): PeerProblem | undefined {
  const certificate = socket.getPeerCertificate()
  const fingerprint256 = fingerprintOf(certificate)
  const seen = fingerprint256 === undefined ? {} : { fingerprint256 }
  if (expected.pin !== undefined) return matchesPin(certificate, expected.pin, 'server') ? undefined : { code: 'PIN_MISMATCH', ...seen }
  if (!socket.authorized) return { code: 'UNTRUSTED', tlsError: String(socket.authorizationError ?? 'unknown'), ...seen }
  const wrongName = checkServerIdentity(expected.serverName, certificate)
  if (wrongName !== undefined) return { code: 'WRONG_NAME', tlsError: 'ERR_TLS_CERT_ALTNAME_INVALID', reason: wrongName.message, ...seen }
  return undefined
}

import type { TLSSocket } from 'node:tls'
import { isTopicId } from '#protocol/topics.js'

/** A gateway's certificate as the broker saw it in the TLS handshake: what `authorizeCertificate` decides on. */
export interface CertificateIdentity {
  /** The certificate's CN: the gateway id. */
  gatewayId: string
  /** Lower-case hex, as RelayPki reports it. */
  serial: string
  /** SHA-256 of the DER certificate, lower-case hex without colons, as RelayPki reports it. */
  fingerprint256: string
}

export type CertificateDecision = { ok: true; tenantId: string } | { ok: false; reason: string }

/** Decides whether a verified certificate may connect: known, enrolled, not revoked, serial current. */
export type AuthorizeCertificate = (identity: CertificateIdentity) => CertificateDecision | Promise<CertificateDecision>

/** A relay certificate (CN `relay:<name>`) as the broker saw it in the TLS handshake. */
export interface RelayCertificateIdentity {
  commonName: string
  /** Lower-case hex. */
  serial: string
}

export type RelayCertificateDecision = { ok: true } | { ok: false; reason: string }

/** Decides whether a verified relay certificate may connect: the current one for its name, not revoked. */
export type AuthorizeRelayCertificate = (identity: RelayCertificateIdentity) => RelayCertificateDecision | Promise<RelayCertificateDecision>

/** The relay's own client certificates have a CN `relay:<name>`; a colon can never appear in a gateway id. */
export const RELAY_CN_PREFIX = 'relay:'

export type PeerIdentity =
  | { kind: 'password'; remote: string }
  | { kind: 'relay-certificate'; commonName: string; serial: string; transport: 'mqtts' | 'wss' }
  | { kind: 'gateway-certificate'; identity: CertificateIdentity; transport: 'mqtts' | 'wss' }
  | { kind: 'bad-certificate'; reason: string; transport: 'mqtts' | 'wss' }

/** Reads the verified peer certificate of a TLS socket (the handshake already checked chain and validity). */
export function peerIdentityOf(socket: TLSSocket, transport: 'mqtts' | 'wss'): PeerIdentity {
  const cert = socket.getPeerCertificate()
  if (!socket.authorized || !cert || Object.keys(cert).length === 0) {
    return { kind: 'bad-certificate', reason: `no verified client certificate (${socket.authorizationError?.toString() ?? 'none presented'})`, transport }
  }
  const cn = cert.subject?.CN
  const commonName = Array.isArray(cn) ? '' : (cn ?? '')
  const serial = cert.serialNumber.toLowerCase()
  if (commonName.startsWith(RELAY_CN_PREFIX) && commonName.length > RELAY_CN_PREFIX.length) {
    return { kind: 'relay-certificate', commonName, serial, transport }
  }
  if (!isTopicId(commonName)) {
    return { kind: 'bad-certificate', reason: `certificate CN "${commonName.slice(0, 80)}" is not a gateway id`, transport }
  }
  return {
    kind: 'gateway-certificate',
    identity: { gatewayId: commonName, serial, fingerprint256: cert.fingerprint256.replaceAll(':', '').toLowerCase() },
    transport,
  }
}

import { LinkError } from '../kit/link-error.js'

/** Why the MTCTI-3 link or one request failed, with a stable code the adapter maps to words and AdapterError codes. */
export type MtctiLinkErrorCode =
  | 'CONNECT_REFUSED'
  | 'CONNECT_TIMEOUT'
  /** Any other socket error before the upgrade (DNS, unreachable, reset). */
  | 'CONNECT_FAILED'
  /** The certificate chain or name did not verify against the system CAs or tls.caFile. */
  | 'TLS_UNTRUSTED'
  /** tls.pinnedSha256 is set and the PBX presented another certificate. */
  | 'TLS_PIN_MISMATCH'
  /** HTTP 401/403 on the upgrade: wrong service user credentials or rights. */
  | 'AUTH_REJECTED'
  /** Any other HTTP answer instead of the upgrade (404: wrong path or MTCTI-3 not enabled, 503: no free link). */
  | 'HTTP_ERROR'
  /** The server did not agree on the "openapi" subprotocol. */
  | 'SUBPROTOCOL'
  /** The open link closed (by the PBX, the network, or a protocol error). */
  | 'SOCKET_CLOSED'
  | 'PING_TIMEOUT'
  | 'FRAME_TOO_LARGE'
  | 'REQUEST_TIMEOUT'
  /** RequestResponse.result other than 0 [I: 0 = success]. */
  | 'REQUEST_REFUSED'
  | 'NOT_OPEN'
  /** The link went down (or was closed by us) while the request was outstanding. */
  | 'LINK_CLOSED'

export interface MtctiLinkErrorDetail {
  errno?: string
  status?: number
  /** SHA-256 of the certificate the server presented (lower-case hex), for TLS errors. */
  fingerprint256?: string
  tlsError?: string
  result?: number
  additional?: string
  requestId?: number
  request?: string
}

export class MtctiLinkError extends LinkError<MtctiLinkErrorCode, MtctiLinkErrorDetail> {}

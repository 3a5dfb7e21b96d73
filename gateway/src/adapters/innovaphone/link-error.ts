import { LinkError } from '../kit/link-error.js'

/** Why the WebSocket, the login or one request failed, with a stable code the adapter turns into plain words. */
export type InnoLinkErrorCode =
  | 'CONNECT_REFUSED'
  | 'CONNECT_TIMEOUT'
  /** DNS, unreachable, reset and other socket errors before the WebSocket opened. */
  | 'CONNECT_FAILED'
  /** The HTTP upgrade was answered with a status other than 101 (wrong path, not a PBX, proxy). */
  | 'UPGRADE_REJECTED'
  /** The PBX's certificate is not trusted (unknown CA, self-signed, wrong name, expired). */
  | 'TLS_UNTRUSTED'
  /** The PBX's certificate is not the pinned one. */
  | 'CERTIFICATE_MISMATCH'
  | 'CA_FILE_UNREADABLE'
  /** AppLoginResult without ok:true: wrong App object name or password. */
  | 'LOGIN_REFUSED'
  /** No AppChallengeResult or AppLoginResult in time. */
  | 'LOGIN_TIMEOUT'
  /** The PBX closed the WebSocket during the login. */
  | 'CLOSED_DURING_LOGIN'
  | 'REQUEST_TIMEOUT'
  /** A result that says the request failed (error/errorText). */
  | 'REQUEST_FAILED'
  | 'NOT_OPEN'
  | 'LINK_CLOSED'

export interface InnoLinkErrorDetail {
  errno?: string
  status?: number
  request?: string
  api?: string
  error?: unknown
  errorText?: string
}

export class InnoLinkError extends LinkError<InnoLinkErrorCode, InnoLinkErrorDetail> {}
